"""Background jobs: persisted rows with status, progress and log, run by a pluggable backend."""
