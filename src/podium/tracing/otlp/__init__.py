"""OpenTelemetry: OTLP/HTTP traces in (`/v1/traces`) and out (export to any OTLP endpoint)."""
