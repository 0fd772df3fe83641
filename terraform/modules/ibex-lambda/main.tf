# ibex as an AWS Lambda function: one function, one EventBridge Scheduler schedule per sync.
# Every invocation is one run of one sync ({"sync":"<name>"}); the run takes a PostgreSQL
# advisory lock, so overlapping invocations of the same sync are harmless.

data "aws_caller_identity" "current" {}

data "aws_subnet" "first" {
  id = var.subnet_ids[0]
}

locals {
  log_group_name = "/aws/lambda/${var.name}"

  # Secrets the function may read: the DSN secret (if any) and the secret_env ARNs, nothing else.
  secret_arns = distinct(compact(concat([var.dsn_secret_arn], values(var.secret_env))))

  # Empty values are dropped, so unset options do not reach the function at all.
  environment = {
    for k, v in merge(
      {
        IBEX_LOG_LEVEL      = var.log_level
        IBEX_LOG_FORMAT     = var.log_format
        IBEX_SYNC           = var.default_sync
        IBEX_DSN            = var.dsn
        IBEX_DSN_SECRET_ARN = var.dsn_secret_arn
        IBEX_SECRET_ENV     = length(var.secret_env) > 0 ? jsonencode(var.secret_env) : ""
      },
      var.extra_env,
    ) : k => v if v != ""
  }
}

# ---------------------------------------------------------------------------
# Logs

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# ---------------------------------------------------------------------------
# Function role: ENIs for the VPC, its own log group, exactly the given secrets.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "lambda" {
  # The ENI actions of AWSLambdaVPCAccessExecutionRole, without its logs:* on "*".
  # EC2 does not scope these by resource for Lambda's use, hence "*".
  statement {
    sid = "VpcNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
  }

  # Streams of this function's log group only; Terraform creates the group itself.
  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    for_each = length(local.secret_arns) > 0 ? [1] : []
    content {
      sid       = "ReadGivenSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptSecretsViaSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = var.kms_key_arns

      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["secretsmanager.*.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "${var.name}-lambda"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# ---------------------------------------------------------------------------
# Network: no ingress; egress to the databases' port and to 443 (Secrets Manager) only.

resource "aws_security_group" "lambda" {
  name        = "${var.name}-lambda"
  description = "ibex Lambda: egress to PostgreSQL and Secrets Manager only"
  vpc_id      = data.aws_subnet.first.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "db" {
  for_each = toset(var.db_cidr_blocks)

  security_group_id = aws_security_group.lambda.id
  description       = "PostgreSQL"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.db_port
  to_port           = var.db_port
  tags              = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = toset(var.https_cidr_blocks)

  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS (Secrets Manager)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = var.tags
}

# ---------------------------------------------------------------------------
# Function

resource "aws_lambda_function" "this" {
  function_name    = var.name
  description      = "ibex: one replication run per invocation ({\"sync\":\"<name>\"})"
  role             = aws_iam_role.lambda.arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = var.filename
  source_code_hash = filebase64sha256(var.filename)
  timeout          = var.timeout
  memory_size      = var.memory_size

  reserved_concurrent_executions = var.reserved_concurrent_executions

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = concat([aws_security_group.lambda.id], var.security_group_ids)
  }

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = var.log_format == "json" ? "JSON" : "Text"
    log_group  = aws_cloudwatch_log_group.this.name
    # ibex filters by IBEX_LOG_LEVEL itself; let Lambda pass everything it prints.
    application_log_level = var.log_format == "json" ? "TRACE" : null
    system_log_level      = var.log_format == "json" ? "INFO" : null
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = (var.dsn == "") != (var.dsn_secret_arn == "")
      error_message = "Set exactly one of dsn and dsn_secret_arn."
    }
  }

  # The role must be able to create ENIs and write logs before the function exists.
  depends_on = [aws_iam_role_policy.lambda]
}

# The scheduler invokes asynchronously. A failed or throttled run is not retried: the next
# tick is the retry, and an old event must not start a stale run much later.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

# ---------------------------------------------------------------------------
# Schedules: one per sync, each allowed to invoke this function and nothing else.

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeIbexFunction"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.this.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "${var.name}-scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "sync" {
  for_each = var.syncs

  name                         = substr("${var.name}-${each.key}", 0, 64)
  group_name                   = var.schedule_group_name
  description                  = "ibex sync ${each.key}"
  schedule_expression          = each.value
  schedule_expression_timezone = var.schedule_timezone
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.this.arn
    role_arn = aws_iam_role.scheduler.arn
    # Scheduler sends exactly this JSON as the event, with no envelope.
    input = jsonencode({ sync = each.key })

    retry_policy {
      maximum_retry_attempts       = 0
      maximum_event_age_in_seconds = 60
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}
