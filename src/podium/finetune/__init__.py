"""Fine-tuning: blueprints (every setting of a fine-tune, planned against the data and stored content-hashed);
the pipeline that runs them, and batch inference, come next (issue 19)."""
