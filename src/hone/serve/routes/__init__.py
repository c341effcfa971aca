"""One module per endpoint family; each exposes a FastAPI `router`."""
