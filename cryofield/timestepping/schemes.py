"""The time-stepping schemes a case may name (``solver.scheme``), and what each supports.

One table, read by the case schema (the names it accepts), the stepper (how a step is built), the step
control (whether the local error estimate applies), ensembles (whether a scheme may be a variant) and the
command line (``cryofield validate``). A new scheme is a row here and the stage rule in the stepper.

Examples
--------
>>> sorted(SCHEMES)
['euler', 'multirate', 'rkl2']
>>> SCHEMES["euler"].super_steps, SCHEMES["multirate"].in_ensembles
(False, False)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    """A time-stepping scheme's name and properties.

    Attributes
    ----------
    name
        What ``solver.scheme`` says.
    summary
        One line for users (``cryofield validate``, the docs).
    super_steps
        Steps beyond the forward-Euler limit with RKL2 stages (False: forward Euler at its limit).
    levels
        The stiff nodes take their own nested stages (the multirate levels).
    error_control
        ``solver.tolerance`` (the local error estimate) applies.
    fixed_stages
        ``solver.stages`` may fix the stage count of every step.
    in_ensembles
        May run as one variant of an ensemble (``cryofield ensemble``, sweeps).
    """

    name: str
    summary: str
    super_steps: bool
    levels: bool
    error_control: bool
    fixed_stages: bool
    in_ensembles: bool


SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("rkl2", "RKL2 super time stepping over the whole mesh", super_steps=True, levels=False,
           error_control=True, fixed_stages=True, in_ensembles=True),
    Scheme("multirate", "RKL2 over the mesh with nested damped-RKC levels for the stiff nodes", super_steps=True,
           levels=True, error_control=True, fixed_stages=False, in_ensembles=False),
    Scheme("euler", "forward Euler at its stability limit (a reference)", super_steps=False, levels=False,
           error_control=False, fixed_stages=False, in_ensembles=True),
)}
