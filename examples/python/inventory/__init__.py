"""A toy inventory package used by the examples and tests."""
