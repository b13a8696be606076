"""posfleet firmware."""
