"""Models: the registry (versions, aliases, lineage), providers, the local engine and model workers."""
