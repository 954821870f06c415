"""Batch inference: a model (or any gateway route) run over a dataset version as a job, its answers written as
a new dataset version (`podium models batch`, `POST /api/models/batch`)."""
