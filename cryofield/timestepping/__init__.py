"""Time integrators that only call backend kernels: RKL2 super-time-stepping, multirate levels, step control, ensemble lanes."""
