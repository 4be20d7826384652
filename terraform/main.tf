# The reference service's functions: one container image, one function per handler. Terraform
# owns their configuration (timeout, memory, architecture, environment); the pipeline owns the
# code they run (image digest, published versions, the alias), hence ignore_changes below:
# `terraform plan` must not report every pipeline deploy as drift. gangway reads this folder
# (gangway/terraform.py) and never runs Terraform. Every function gets the service's common
# settings; a handler's required keys are in deployments/service.toml (required_env).

resource "aws_lambda_function" "api" {
  function_name = "${var.service}-${var.env}-api"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 30
  memory_size   = 512
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_lambda_function" "report_worker" {
  function_name = "${var.service}-${var.env}-report-worker"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 120
  memory_size   = 1024
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_lambda_function" "telegram" {
  function_name = "${var.service}-${var.env}-telegram"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 30
  memory_size   = 256
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
      TELEGRAM_BOT_TOKEN = var.telegram_token
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_lambda_function" "ticker_fetcher" {
  function_name = "${var.service}-${var.env}-ticker-fetcher"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 60
  memory_size   = 256
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_lambda_function" "query_tool" {
  function_name = "${var.service}-${var.env}-query-tool"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 60
  memory_size   = 256
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_lambda_function" "precompute_controller" {
  function_name = "${var.service}-${var.env}-precompute-controller"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 60
  memory_size   = 256
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_lambda_function" "line_webhook" {
  function_name = "${var.service}-${var.env}-line-webhook"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.service.arn
  timeout       = 10
  memory_size   = 256
  architectures = ["x86_64"]

  environment {
    variables = {
      TZ             = var.tz
      DB_HOST        = var.db_host
      DB_PORT        = var.db_port
      DB_NAME        = var.db_name
      DB_USER        = var.db_user
      DB_PASSWORD    = var.db_password
      CACHE_TABLE    = "precomputed_reports"
      REPORT_BUCKET  = var.report_bucket
      TICKER_SYMBOLS = var.ticker_symbols
      LINE_CHANNEL_SECRET = var.line_secret
    }
  }

  lifecycle {
    ignore_changes = [image_uri]
  }
}

resource "aws_iam_role" "service" {
  name               = "${var.service}-${var.env}"
  assume_role_policy = file("${path.module}/lambda-trust.json")
}
