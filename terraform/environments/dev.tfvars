# terraform apply -var-file=environments/dev.tfvars (secrets as TF_VAR_db_password, ...)
env           = "dev"
db_host       = "127.0.0.1"
db_name       = "daily_report_dev"
db_user       = "daily_report_dev"
report_bucket = "daily-report-dev-reports"
