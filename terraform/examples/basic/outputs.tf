output "function_name" {
  value = module.ibex.function_name
}

output "schedule_arns" {
  value = module.ibex.schedule_arns
}

output "security_group_id" {
  description = "Allow this group on the databases' security groups, tcp/5432."
  value       = module.ibex.security_group_id
}
