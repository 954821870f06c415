"""Chains and agents: versioned graphs of typed steps (prompts, models, retrieval, tools, branches, maps),
served behind the gateway (issue 18). `spec` is a chain version's content and its checks."""
