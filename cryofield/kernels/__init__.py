"""The one body of each solver kernel (operator, integrator stages, dose trackers) and the pointwise material laws, rendered by each backend."""
