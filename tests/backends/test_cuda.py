"""The CUDA backend against the CPU backend: every kernel and a short run agree to 1e-9 K in float64.

On a real GPU the comparison runs in this process (``device``). Without one it runs under the Numba CUDA
simulator (``nodevice``) in a subprocess, because ``NUMBA_ENABLE_CUDASIM`` must be set before
``numba.cuda`` is first imported and the rest of the suite must not see the simulator.

The device parity test (:func:`parity`) runs a freeze-thaw on a 30³-cell block (29 791 nodes) on both
backends. A real GPU contracts a * b + c into FMA and the CPU does not, so with FMA the two runs are
compared when they take the same steps (``max_change`` infinite: the step doubles up to ``max_dt``
whatever the state; a rejection decision that flipped on a round-off difference would change results
by far more than round-off) at :data:`PARITY_TOLERANCE_K`; in the exact mode (FMA off,
``CudaBackend(exact=True)``) the GPU evaluates the CPU's arithmetic, so the runs take their adaptive
steps and agree to :data:`EXACT_TOLERANCE_K`. Under the simulator the same code runs on a 2³-cell block.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cryofield.backends import get_backend
from cryofield.config.case import parse_case
from cryofield.errors import BackendUnavailable
from cryofield.io import read_result
from cryofield.mesh.sources import mesh_of
from cryofield.model.materials import minimum_capacity
from cryofield.problem.assemble import build_problem
from cryofield.run.runner import run_case
from cryofield.timestepping.control import StepControl
from cryofield.timestepping.stepper import Stepper

TOLERANCE_K = 1e-9
#: GPU (FMA contracted) against CPU, float64, same steps, 90 s of freeze and thaw on 29 791 nodes (K).
PARITY_TOLERANCE_K = 1e-7
#: GPU with FMA off against CPU, adaptive steps (K): the same arithmetic, expected bit for bit.
EXACT_TOLERANCE_K = 1e-12
#: Cells per side of the parity block and its freeze and thaw (s), on a GPU (29 791 nodes) and under the simulator.
PARITY, SIMULATOR_PARITY = (30, 60, 30), (2, 20, 10)
PARITY_CASE = """
name: parity
mesh:
  generate: {kind: slab, size: [40, 40, 40], cells: [CELLS, CELLS, CELLS]}
  units: mm
tissues: {tissue: {library: muscle}}
probes: [{name: cold, surface: xmin}]
protocol: [{kind: freeze, duration: FREEZE, temperature: -70}, {kind: passive_thaw, duration: THAW}]
initial: {type: uniform, temperature: 37}
boundaries:
  - {surface: xmax, type: fixed, temperature: 37}
  - {surface: zmax, type: convection}
outputs: {snapshot_interval: 30, metrics_interval: 10, dose_thresholds: [-20, -40]}
"""
#: A 3 x 2 x 2-cell slab: a probe face that freezes then thaws, a fixed far face and a convective face.
TINY_CASE = """
name: tiny
mesh:
  generate: {kind: slab, size: [3, 2, 2], cells: [3, 2, 2]}
  units: mm
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol: [{kind: freeze, duration: 1.5, temperature: -70}, {kind: passive_thaw, duration: 0.5}]
initial: {type: uniform, temperature: 37}
boundaries:
  - {surface: xmax, type: fixed, temperature: 37}
  - {surface: zmax, type: convection, heat_transfer_coefficient: 10, temperature: 22}
outputs: {snapshot_interval: 1, metrics_interval: 0.5, fields: [temperature, enthalpy]}
solver: {max_dt: 0.5, precision: PRECISION}
"""
KERNELS = ("temperature", "apply_operator", "combine", "stage", "step_change", "local_error", "commit", "track")


def _tiny(precision: str = "float64"):
    case = parse_case(TINY_CASE.replace("PRECISION", precision))
    return case, build_problem(case, mesh_of(case))


def _kernel_outputs(backend, problem, state, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every kernel of ``backend`` applied once to the same host inputs; outputs copied back."""
    be, n, f8 = backend, problem.n_nodes, np.float64
    dp = be.load(problem, f8)
    be.upload_boundaries(dp, state, f8)
    dev = {k: be.to_device(v) for k, v in inputs.items()}
    out = {k: be.empty(n, f8) for k in ("T", "L", "Y", "TY", "Ls", "Ys", "TYs")}
    coefs = (1.3, -0.2, -0.1, 0.05, -0.02)
    be.temperature(dp, dev["H"], out["T"])
    be.apply_operator(dp, dev["T"], out["L"])
    be.combine(dp, out["Y"], out["TY"], coefs, dev["H"], dev["H2"], dev["H3"], dev["L1"], dev["L0"])
    be.stage(dp, dev["T"], out["Ls"], out["Ys"], out["TYs"], coefs, dev["H"], dev["H2"], dev["H3"], dev["L0"])
    be.track(dp, dev["T"], dev["T2"], np.array([0.3]), dev["T_min"], be.to_device(np.array([-20.0, -40.0])),
             dev["below"])
    host = {k: be.to_host(v) for k, v in out.items()}
    host["T_min"], host["below"] = be.to_host(dev["T_min"]), be.to_host(dev["below"])
    host["step_change"] = np.concatenate([be.step_change(dp, dev["T"], dev["T2"], dev["T"], np.array([s], np.int32))
                                          for s in (1, 2)])
    weights = np.array([[-0.3, 1.1, -1.2, 0.4]])
    host["local_error"] = np.concatenate([be.local_error(dp, dev["T3"], dev["T2"], dev["T"], dev["T2"], dev["T_min"],
                                                         np.array([s], np.int32), weights) for s in (1, 2)])
    committed = {k: be.to_device(inputs[k]) for k in ("H", "T", "T2", "T3")}
    be.commit(dp, np.array([2], np.int32), np.array([1], np.uint8), committed["H"], committed["T"], committed["T2"],
              committed["T3"], (dev["H2"], dev["H3"], dev["H"]), dev["T"], dev["T_min"])
    host |= {f"commit_{k}": be.to_host(v) for k, v in committed.items()}
    return host


def kernel_differences() -> dict[str, float]:
    """Largest |cuda - cpu| of each kernel on the tiny slab, in kelvin.

    Enthalpies are divided by the smallest volumetric heat capacity, rates also multiplied by the stable
    step: the temperature error each would cause within one step.
    """
    case, problem = _tiny()
    state = problem.boundary_state(case.protocol[0])
    rng = np.random.default_rng(7)
    n = problem.n_nodes
    T = rng.uniform(-90.0, 37.0, n)  # frozen, mushy and unfrozen nodes
    H = problem.enthalpy(T)
    rate = 1e5  # W/m³, the order of the operator's output here
    inputs = {"T": T, "T2": T + rng.uniform(-30.0, 30.0, n), "T3": T + rng.uniform(-3.0, 3.0, n), "H": H,
              "H2": H * 1.01, "H3": H * 0.99,
              "L1": rng.uniform(-rate, rate, n), "L0": rng.uniform(-rate, rate, n), "T_min": T + 5.0,
              "below": rng.uniform(0.0, 2.0, (2, n))}
    cpu = _kernel_outputs(get_backend("cpu"), problem, state, inputs)
    gpu = _kernel_outputs(get_backend("cuda"), problem, state, inputs)
    c_min = minimum_capacity(problem.materials[0])
    dt = 2.0 / problem.spectral_radius_bound(state.robin_coef, state.fixed)
    diff = {k: float(np.abs(cpu[k] - gpu[k]).max()) for k in cpu}
    return {"temperature": diff["T"], "apply_operator": diff["L"] * dt / c_min,
            "combine": max(diff["Y"] / c_min, diff["TY"]),
            "stage": max(diff["Ls"] * dt / c_min, diff["Ys"] / c_min, diff["TYs"]),
            "step_change": diff["step_change"], "local_error": diff["local_error"],
            "track": max(diff["T_min"], diff["below"]),
            "commit": max(diff["commit_H"] / c_min, diff["commit_T"], diff["commit_T2"], diff["commit_T3"])}


def run_differences(out_dir: Path) -> dict:
    """Run the tiny case end to end on both backends; largest field differences and what the results record."""
    case, _ = _tiny()
    results = {}
    for name in ("cpu", "cuda"):
        report = run_case(case, out_dir / name, backend=name, progress=False)
        results[name] = read_result(report.paths["h5"])
    cpu, gpu = results["cpu"], results["cuda"]
    n_snap = len(cpu.snapshot_times)
    return {
        "snapshots": n_snap, "same_snapshot_times": bool(np.array_equal(cpu.snapshot_times, gpu.snapshot_times)),
        "temperature_K": max(float(np.abs(cpu.snapshot(k) - gpu.snapshot(k)).max()) for k in range(n_snap)),
        "fields": max(float(np.abs(cpu.fields[k] - gpu.fields[k]).max()) for k in cpu.fields),
        "final_min_C": float(gpu.snapshot(n_snap - 1).min()),
        "backend": gpu.attrs["backend"], "device": gpu.attrs["device"], "device_name": get_backend("cuda").device_name,
    }


def float32_difference() -> float:
    """Largest |cuda - cpu| of the temperature after a short float32 freeze on the stepper (K)."""
    case, problem = _tiny("float32")
    state = problem.boundary_state(case.protocol[0])
    dt_fe = 2.0 / problem.spectral_radius_bound(state.robin_coef, state.fixed)
    temps = []
    for name in ("cpu", "cuda"):
        stepper = Stepper(get_backend(name), problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)),
                          StepControl("rkl2", 0.9 * dt_fe, 0.5), dtype=np.float32)
        stepper.set_boundaries(state)
        stepper.advance(1.0)
        temps.append(stepper.temperature_host())
    return float(np.abs(temps[0] - temps[1]).max())


def _parity_run(plan, backend, adaptive: bool) -> dict[str, np.ndarray]:
    """Drive ``plan`` on ``backend`` (same steps as every other run unless ``adaptive``): final T, dose fields."""
    from cryofield.run.driver import drive
    from cryofield.run.observers.dose import DoseTracker

    control = plan.control()
    if not adaptive:
        control.max_change = np.inf
    problem = plan.problem
    stepper = Stepper(backend, problem, problem.enthalpy(plan.initial_temperature()), control, plan.dtype)
    dose = DoseTracker(plan.case.outputs.dose_thresholds)
    run = drive(plan.timeline, stepper, [dose])
    return {"T": stepper.temperature_host(), "T_min": dose.min_temperature(run), "below": dose.times_below(run),
            "steps": np.array([stepper.stats.steps, stepper.stats.rejected])}


def parity(cells: int, freeze: float, thaw: float) -> dict:
    """The freeze-thaw block on the CPU and on the GPU, with FMA (same steps) and without (adaptive steps):
    the largest differences of the final temperature, the minimum temperature (K) and time below (s)."""
    from cryofield.backends.cuda.backend import CudaBackend
    from cryofield.backends.cuda.exact import exact_support
    from cryofield.run.plan import prepare

    text = PARITY_CASE.replace("CELLS", str(cells)).replace("FREEZE", f"{freeze:g}").replace("THAW", f"{thaw:g}")
    plan = prepare(parse_case(text))
    diff = lambda a, b: max(float(np.abs(a[k] - b[k]).max()) for k in ("T", "T_min", "below"))  # noqa: E731
    cpu_same, gpu_same = _parity_run(plan, get_backend("cpu"), False), _parity_run(plan, CudaBackend(), False)
    record = {"nodes": plan.problem.n_nodes, "fma_K": diff(cpu_same, gpu_same),
              "same_steps": gpu_same["steps"].tolist(), "cpu_steps": cpu_same["steps"].tolist(),
              "min_C": float(gpu_same["T_min"].min()), "final_min_C": float(gpu_same["T"].min()),
              "exact_support": exact_support()[1]}
    if exact_support()[0]:
        cpu, exact = _parity_run(plan, get_backend("cpu"), True), _parity_run(plan, CudaBackend(exact=True), True)
        record |= {"exact_K": diff(cpu, exact), "exact_steps": exact["steps"].tolist(),
                   "cpu_adaptive_steps": cpu["steps"].tolist()}
    return record


def check_parity(record: dict) -> None:
    assert record["same_steps"] == record["cpu_steps"]
    assert record["min_C"] < -40.0 and record["final_min_C"] > record["min_C"] + 0.5  # froze deep, then thawed
    assert record["fma_K"] <= PARITY_TOLERANCE_K, f"GPU with FMA differs from the CPU by {record['fma_K']:.3g}"
    assert "exact_K" in record, f"no exact mode: {record['exact_support']}"
    assert record["exact_steps"] == record["cpu_adaptive_steps"]
    assert record["exact_K"] <= EXACT_TOLERANCE_K, f"GPU with FMA off differs from the CPU by {record['exact_K']:.3g}"


def agreement() -> dict:
    """Everything the tests check, as one JSON-able record."""
    with tempfile.TemporaryDirectory() as tmp:
        run = run_differences(Path(tmp))
    backend = get_backend("auto")
    return {"kernels": kernel_differences(), "run": run, "float32_K": float32_difference(),
            "auto": backend.name, "chosen_by": backend.chosen_by}


def check(record: dict) -> None:
    assert set(record["kernels"]) == set(KERNELS)
    for kernel, error in record["kernels"].items():
        assert error <= TOLERANCE_K, f"{kernel}: cuda and cpu differ by {error:.3g} K"
    run = record["run"]
    assert run["snapshots"] >= 4 and run["same_snapshot_times"]
    assert run["temperature_K"] <= TOLERANCE_K and run["fields"] <= TOLERANCE_K
    assert run["final_min_C"] < -1.0  # the run froze something, so phase change was exercised
    assert run["backend"] == "cuda" and run["device"] == run["device_name"]
    assert record["float32_K"] < 1e-3
    assert record["auto"] == "cuda" and "usable GPU" in record["chosen_by"]


@pytest.mark.device
def test_cuda_agrees_with_cpu_on_gpu():
    check(agreement())


@pytest.mark.device
def test_freeze_thaw_on_30k_nodes_agrees_with_cpu_on_gpu():
    record = parity(*PARITY)
    print(json.dumps(record))
    assert record["nodes"] == 29791
    check_parity(record)


@pytest.mark.device
def test_gpu_launches_are_prepared_and_steps_replayed_as_graphs():
    from cryofield.backends.cuda.backend import CudaBackend

    case, problem = _tiny()
    state = problem.boundary_state(case.protocol[0])
    backend = CudaBackend()
    stepper = Stepper(backend, problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)),
                      StepControl("rkl2", 0.9 * 2.0 / problem.spectral_radius_bound(state.robin_coef, state.fixed),
                                  0.05, max_change=np.inf, stages=4), dtype=np.float64)
    stepper.set_boundaries(state)
    stepper.advance(1.0)
    diagnostics = backend.diagnostics()
    print(json.dumps(diagnostics, indent=1))
    assert diagnostics["prepared_launches"].startswith("on"), diagnostics["prepared_launches"]
    assert diagnostics["step_graphs"].startswith("on"), diagnostics["step_graphs"]
    assert backend._graphs.built >= 1 and backend._graphs.replayed >= 10


@pytest.mark.nodevice
def test_cuda_agrees_with_cpu_under_simulator(under_simulator):
    check(under_simulator("test_cuda", "agreement()"))


@pytest.mark.nodevice
def test_parity_check_runs_under_simulator(under_simulator):
    """The device parity test's own code, on a 2³-cell block under the simulator (no FMA there: both agree)."""
    record = under_simulator("test_cuda", f"parity{SIMULATOR_PARITY!r}")
    assert record["nodes"] == (SIMULATOR_PARITY[0] + 1) ** 3
    check_parity(record)


@pytest.mark.nodevice
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="the simulator counts as a GPU")
def test_cuda_without_gpu_is_refused_and_auto_picks_cpu():
    with pytest.raises(BackendUnavailable, match="cuda backend cannot run here"):
        get_backend("cuda")
    backend = get_backend("auto")
    assert backend.name == "cpu" and backend.chosen_by.startswith("picked by auto: no cuda")


def test_auto_says_why_it_picked_cpu(monkeypatch):
    monkeypatch.setattr("cryofield.backends.cuda_status", lambda: (False, "no CUDA GPU or driver found"))
    backend = get_backend("auto")
    assert backend.name == "cpu" and backend.chosen_by == "picked by auto: no cuda (no CUDA GPU or driver found)"
    assert get_backend("cpu").chosen_by == "asked for as 'cpu'"
