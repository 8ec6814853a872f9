"""The discrete problem of a case on its mesh: per-node and per-element arrays (lumped volumes, element
gradients, material ids, boundary facets, probe node sets, the schedule), and the steady basal state."""
