variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "lambda_zip" {
  description = "The zip built by `make lambda`."
  type        = string
  default     = "../../../dist/ibex-lambda.zip"
}

variable "dsn_secret_arn" {
  description = "Full ARN of the secret holding the control database DSN."
  type        = string
}

variable "secret_env" {
  description = "{ ENV_VAR => full secret ARN } for the passwords referenced as pass=env:ENV_VAR."
  type        = map(string)
  default     = {}
}

variable "subnet_ids" {
  description = "Private subnets with a route to the databases and to Secrets Manager."
  type        = list(string)
}

variable "db_cidr_blocks" {
  description = "CIDR blocks of the control and replicated databases."
  type        = list(string)
}
