"""hone's HTTP server: OpenAI-compatible inference and fine-tuning routes."""
