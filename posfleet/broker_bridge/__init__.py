"""posfleet broker_bridge."""
