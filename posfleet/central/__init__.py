"""posfleet central."""
