"""The HTTP server: app factory, process supervision, metrics."""
