"""Unit tests: one component at a time, no servers but files and SQLite."""
