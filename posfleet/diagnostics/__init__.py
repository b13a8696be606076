"""posfleet diagnostics."""
