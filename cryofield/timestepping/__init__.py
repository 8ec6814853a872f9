"""Time integration through backend kernels only: the table of schemes, RKL2 super time stepping, multirate
levels, step control with a local error estimate, and the stepper with its ensemble lanes."""
