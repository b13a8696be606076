"""posfleet simulator."""
