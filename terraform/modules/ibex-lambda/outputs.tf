output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.lambda.arn
}

output "scheduler_role_arn" {
  description = "ARN of the role EventBridge Scheduler assumes to invoke the function."
  value       = aws_iam_role.scheduler.arn
}

output "schedule_arns" {
  description = "ARN of each sync's schedule, by sync name."
  value       = { for k, s in aws_scheduler_schedule.sync : k => s.arn }
}

output "security_group_id" {
  description = "The function's security group; allow it on the databases' security groups (ingress tcp/db_port)."
  value       = aws_security_group.lambda.id
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.this.name
}
