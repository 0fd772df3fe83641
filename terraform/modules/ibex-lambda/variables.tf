variable "name" {
  description = "Name of the Lambda function; also the prefix of the roles, security group, log group and schedules."
  type        = string
  default     = "ibex"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,40}$", var.name))
    error_message = "name must be 1-40 characters of letters, digits, '-' or '_' (it prefixes IAM role and schedule names)."
  }
}

variable "filename" {
  description = "Path to the deployment zip built by `make lambda` (dist/ibex-lambda.zip, containing the arm64 `bootstrap`)."
  type        = string
}

variable "syncs" {
  description = "Syncs to run, as { sync name => EventBridge Scheduler expression }, e.g. { foobar = \"rate(1 minute)\" }. One schedule per sync; each sends {\"sync\":\"<name>\"}."
  type        = map(string)

  validation {
    condition     = length(var.syncs) > 0
    error_message = "syncs must name at least one sync."
  }

  validation {
    condition     = alltrue([for expr in values(var.syncs) : can(regex("^(rate|cron|at)\\(.+\\)$", expr))])
    error_message = "Each schedule must be rate(...), cron(...) or at(...)."
  }
}

variable "schedule_timezone" {
  description = "Time zone of the cron() expressions in syncs."
  type        = string
  default     = "UTC"
}

variable "schedule_group_name" {
  description = "EventBridge Scheduler group the schedules are created in."
  type        = string
  default     = "default"
}

variable "default_sync" {
  description = "IBEX_SYNC: the sync run when an invocation's event names none. Empty: such events fail."
  type        = string
  default     = ""
}

variable "dsn" {
  description = "IBEX_DSN: the control database as libpq conninfo or URL, WITHOUT a password (use dsn_secret_arn when the DSN holds one). Exactly one of dsn and dsn_secret_arn must be set."
  type        = string
  default     = ""
  sensitive   = true
}

variable "dsn_secret_arn" {
  description = "IBEX_DSN_SECRET_ARN: full ARN of a Secrets Manager secret whose secret string is the control DSN. Exactly one of dsn and dsn_secret_arn must be set."
  type        = string
  default     = ""
}

variable "secret_env" {
  description = "Environment variables filled from Secrets Manager at start, as { VARNAME => full secret ARN }; e.g. the VAR of `pass=env:VAR` in `ibex add db`. Passed to the function as IBEX_SECRET_ENV (JSON) and granted secretsmanager:GetSecretValue on exactly these ARNs."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.secret_env) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "secret_env keys must be valid environment variable names."
  }

  validation {
    condition     = alltrue([for arn in values(var.secret_env) : startswith(arn, "arn:")])
    error_message = "secret_env values must be full secret ARNs (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-xxxxxx)."
  }
}

variable "kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the secrets, if any; the function may kms:Decrypt with them only through Secrets Manager. Leave empty for the AWS-managed key."
  type        = list(string)
  default     = []
}

variable "extra_env" {
  description = "Further plain environment variables (no secrets: they are visible in the Lambda console)."
  type        = map(string)
  default     = {}
}

variable "log_level" {
  description = "IBEX_LOG_LEVEL: terse, normal, verbose or debug."
  type        = string
  default     = "normal"

  validation {
    condition     = contains(["terse", "normal", "verbose", "debug"], var.log_level)
    error_message = "log_level must be terse, normal, verbose or debug."
  }
}

variable "log_format" {
  description = "IBEX_LOG_FORMAT: json or text. json also switches the Lambda log format to JSON."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be json or text."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group, in days."
  type        = number
  default     = 30
}

variable "timeout" {
  description = "Function timeout in seconds (at most 900). A run stops early before it to record its status; the next run finishes the work."
  type        = number
  default     = 300

  validation {
    condition     = var.timeout >= 10 && var.timeout <= 900
    error_message = "timeout must be between 10 and 900 seconds."
  }
}

variable "memory_size" {
  description = "Function memory in MB."
  type        = number
  default     = 256
}

variable "reserved_concurrent_executions" {
  description = "Reserved concurrency; -1 leaves the function unreserved. Correctness never depends on it: each sync takes an advisory lock, and a second run of the same sync exits at once."
  type        = number
  default     = -1
}

variable "subnet_ids" {
  description = "Private subnets the function runs in. They need a route to the databases and to Secrets Manager (NAT gateway or a secretsmanager interface VPC endpoint)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Extra security groups attached to the function, besides the one this module creates."
  type        = list(string)
  default     = []
}

variable "db_cidr_blocks" {
  description = "IPv4 CIDR blocks of the databases (control and replicated); the module's security group allows egress to them on db_port only."
  type        = list(string)
}

variable "db_port" {
  description = "PostgreSQL port of the databases."
  type        = number
  default     = 5432
}

variable "https_cidr_blocks" {
  description = "IPv4 CIDR blocks allowed on 443 (Secrets Manager, via NAT or an interface endpoint). Narrow it to the VPC CIDR when you use a VPC endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
