"""Platform spine: configuration, storage, identity, jobs."""
