"""P1 finite elements on plain numpy arrays: tetrahedral and r-z geometry, volume measures, closed-form
references. No other cryofield layer below it: meshes, models and the problem assembly all build on it."""
