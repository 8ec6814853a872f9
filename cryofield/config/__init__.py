"""What the user writes: the case schema, the strict YAML loader, mesh and placement specs, and the up-front cost estimates."""
