"""The offline signals scorer: trajectory signals from sentence embeddings, no reward model."""
