"""The ``flux`` boundary: a constant heat flux through a surface (steady profile, energy balance, bad input)."""

import numpy as np
import pytest

from cryofield.backends import get_backend
from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem
from cryofield.problem.steady import steady_state
from cryofield.run.plan import prepare
from cryofield.timestepping.stepper import Stepper

SLAB = """
mesh: {{generate: {{kind: slab, size: [10, 2, 2], cells: [20, 2, 2]}}, units: mm}}
tissues: {{tissue: {{library: generic, perfusion: 0, metabolic_heat: 0}}}}
initial: {{type: uniform, temperature: 37}}
boundaries:
  - {{surface: xmin, type: flux, heat_flux: {q}}}
{far}"""


def test_steady_profile_is_linear_with_the_imposed_gradient():
    """-k dT/dx = -q at x = 0 into the tissue, T(L) fixed: T = T_L + q (L - x) / k exactly (P1 is exact)."""
    q = 2000.0
    case = parse_case(SLAB.format(q=q, far="  - {surface: xmax, type: fixed, temperature: 37}\n"))
    problem = build_problem(case, mesh_of(case))
    T = steady_state(problem, problem.boundary_state(None), tol=1e-10)
    x = problem.mesh.points[:, 0]
    np.testing.assert_allclose(T, 37.0 + q * (10e-3 - x) / 0.5, atol=1e-6)


def test_heat_drawn_out_equals_flux_times_area_times_time():
    """Insulated elsewhere: the enthalpy lost over 20 s is q A t, across the phase change too."""
    q, duration = -40000.0, 20.0
    case = parse_case(SLAB.format(q=q, far=""))
    plan = prepare(case)
    problem = plan.problem
    stepper = Stepper(get_backend("cpu"), problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)), plan.control())
    stepper.set_boundaries(problem.boundary_state(None))
    H0 = stepper.enthalpy_host()
    stepper.advance(duration)
    assert stepper.temperature_host().min() < -8.0  # the face froze
    lost = np.sum(problem.lumped * (stepper.enthalpy_host() - H0))
    assert lost == pytest.approx(q * 2e-3 * 2e-3 * duration, rel=1e-9)


@pytest.mark.parametrize("entry", ["{surface: xmin, type: flux}",
                                   "{surface: xmin, type: convection, heat_flux: 10}",
                                   "{surface: xmin, type: flux, heat_flux: 10, temperature: 5}"])
def test_flux_entries_are_checked(entry):
    text = SLAB.format(q=0, far="").replace("{surface: xmin, type: flux, heat_flux: 0}", entry)
    with pytest.raises(InputError, match="boundaries"):
        parse_case(text)
