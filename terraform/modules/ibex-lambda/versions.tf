terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # logging_config on aws_lambda_function and aws_vpc_security_group_egress_rule need 5.x.
      version = ">= 5.40"
    }
  }
}
