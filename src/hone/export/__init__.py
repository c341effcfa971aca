"""Exporting tuned models: merged transformers directories (and, later, GGUF files)."""
