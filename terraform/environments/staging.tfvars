# terraform apply -var-file=environments/staging.tfvars (secrets as TF_VAR_db_password, ...)
env           = "staging"
db_host       = "127.0.0.1"
db_name       = "daily_report_staging"
db_user       = "daily_report_staging"
report_bucket = "daily-report-staging-reports"
