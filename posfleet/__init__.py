"""posfleet: remote diagnostics and fleet management for POS terminals."""

__version__ = "0.1.0"
