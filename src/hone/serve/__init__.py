"""hone's OpenAI-compatible server: one base model, many adapters (`hone serve`)."""
