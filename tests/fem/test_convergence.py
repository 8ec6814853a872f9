"""Spatial convergence of the P1 discretisation: observed orders L2 ≈ 2 and H1 ≈ 1 (fit with polyfit).

The studies are the verification suite's (``benchmarks/verification.py``), on this test's refinement series.
"""

from benchmarks.verification import manufactured_study, pennes_sphere_study


def test_steady_pennes_sphere_second_order():
    record = pennes_sphere_study([1.1, 0.8, 0.55, 0.4])
    assert 1.8 <= record["observed_order"]["L2"] <= 2.2, record


def test_manufactured_variable_conductivity_and_perfusion():
    """k(T) = 0.3 + 0.01 T (a conductivity table), perfusion varying in space; f from the exact solution."""
    record = manufactured_study([6, 12, 24, 36])
    assert 1.8 <= record["observed_order"]["L2"] <= 2.2, record
    assert 0.9 <= record["observed_order"]["H1"] <= 1.1, record
