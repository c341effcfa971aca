"""HTTP routes, one module per endpoint family; each stays thin and calls into serve/ and infer/."""
