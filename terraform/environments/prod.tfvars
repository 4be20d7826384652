# terraform apply -var-file=environments/prod.tfvars (secrets as TF_VAR_db_password, ...)
env           = "prod"
db_host       = "127.0.0.1"
db_name       = "daily_report_prod"
db_user       = "daily_report_prod"
report_bucket = "daily-report-prod-reports"
