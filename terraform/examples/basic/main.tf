provider "aws" {
  region = var.region

  default_tags {
    tags = {
      app = "ibex"
    }
  }
}

module "ibex" {
  source = "../../modules/ibex-lambda"

  name     = "ibex"
  filename = var.lambda_zip

  syncs = {
    foobar  = "rate(1 minute)"
    nightly = "cron(0 3 * * ? *)"
  }

  # The control DSN is read from Secrets Manager; the db passwords referenced by
  # `ibex add db ... pass=env:T1_PASSWORD` are injected as environment variables.
  dsn_secret_arn = var.dsn_secret_arn
  secret_env     = var.secret_env

  subnet_ids     = var.subnet_ids
  db_cidr_blocks = var.db_cidr_blocks

  log_level = "normal"
}
