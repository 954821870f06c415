"""Guardrail scanners: text in, findings out (PII, secrets, prompt injection, toxicity, topics, language,
invisible characters, JSON schema, relevance, URLs, an LLM judge), the actions that apply them (block, redact,
mask, hash) and the scan API. Policies, the gateway's use of them and monitoring build on this interface."""
