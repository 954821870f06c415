"""The dashboard: server-rendered pages, one template folder per domain."""
