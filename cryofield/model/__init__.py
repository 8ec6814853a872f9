"""The physics a case names: quantities and curves, materials and their laws, roles and thresholds, the protocol schedule, and the boundary and device models."""
