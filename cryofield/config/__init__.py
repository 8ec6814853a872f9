"""What the user writes: the case schema and its strict YAML loader (``case``), the mesh section and probe
placements (``meshspec``), and the up-front estimates of what a run will cost (``resources``)."""
