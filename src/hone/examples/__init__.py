"""Small built-in tasks for `hone demo` and the tests: data generators plus their prompts."""
