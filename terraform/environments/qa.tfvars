# terraform apply -var-file=environments/qa.tfvars (secrets as TF_VAR_db_password, ...)
env           = "qa"
db_host       = "127.0.0.1"
db_name       = "daily_report_qa"
db_user       = "daily_report_qa"
report_bucket = "daily-report-qa-reports"
