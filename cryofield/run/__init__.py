"""Running a case: planning, the driver loop, observers, checkpoints, guards and ensembles."""
