"""posfleet dashboard."""
