output "values" {
  description = "The chart values as an object."
  value       = local.values
}

output "values_yaml" {
  description = "The chart values as YAML for helm -f."
  value       = yamlencode(local.values)
}
