"""posfleet agent."""
