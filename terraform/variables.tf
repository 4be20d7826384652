# Inputs of the reference service's infrastructure, per environment (environments/<env>.tfvars).
# Sensitive ones never sit in a file: CI gives them as TF_VAR_<name>; gangway reads the same
# value from GANGWAY_<ENV>_<NAME> (e.g. GANGWAY_DEV_DB_PASSWORD) to compare by keyed hash.

variable "env" {
  type = string
}

variable "service" {
  type    = string
  default = "daily-report"
}

variable "tz" {
  type    = string
  default = "Asia/Bangkok"
}

variable "db_host" {
  type = string
}

variable "db_port" {
  type    = string
  default = "3306"
}

variable "db_name" {
  type = string
}

variable "db_user" {
  type = string
}

variable "report_bucket" {
  type = string
}

variable "ticker_symbols" {
  type    = string
  default = "PTT,AOT,CPALL"
}

variable "image_uri" {
  description = "The bootstrap image; the pipeline deploys code by digest afterwards."
  type        = string
  default     = "127.0.0.1:5000/daily-report:bootstrap"
}

variable "db_password" {
  type      = string
  sensitive = true
}

variable "telegram_token" {
  type      = string
  sensitive = true
}

variable "line_secret" {
  type      = string
  sensitive = true
}
