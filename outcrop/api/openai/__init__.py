"""The OpenAI dialect: chat completions, completions, models and embeddings under /v1."""
