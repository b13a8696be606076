"""The built-in rule pack: one YAML file per area of the terminal."""
