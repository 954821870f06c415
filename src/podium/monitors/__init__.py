"""Monitors: volume, errors, latency, cost, tokens, cache hits, guardrail blocks, quality scores and feedback
over the traces, per route, model, prompt version and project."""
