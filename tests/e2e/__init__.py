"""End-to-end tests against the real servers the test session starts."""
