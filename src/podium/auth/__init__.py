"""Identity: projects, users, roles, API keys and the audit log."""
