"""Repair decisions, pure: which GPUs to fence (under a circuit breaker), and what to do
with each workload whose members sit on fenced GPUs (by its repair policy, within its
retry budget)."""
