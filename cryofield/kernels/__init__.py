"""The one body of each solver kernel (``bodies``: operator, integrator stages, reductions, dose trackers) and
the pointwise material laws (``pointwise``), rendered by each backend with its own compiler."""
