"""The built-in knowledge entries (YAML), one file per rule file."""
