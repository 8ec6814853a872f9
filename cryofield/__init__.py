"""cryofield: cryoneurolysis simulation (Pennes bioheat with freezing) on tetrahedral meshes.

The public face for scripts: load a case, run it, read its result. The names load on first use, so that
``import cryofield`` stays light (no Numba, pydantic or plotting libraries until they are needed).

Examples
--------
>>> import cryofield
>>> [name for name in ("load_case", "run_case", "read_result") if name in cryofield.__all__]
['load_case', 'run_case', 'read_result']

A script runs a case and reads the result back::

    case = cryofield.load_case("cases/gon_double_freeze.yaml")
    report = cryofield.run_case(case, "results")
    result = cryofield.read_result(report.paths["h5"])
"""

from importlib import import_module

from cryofield.version import __version__

#: Public name -> module that defines it.
_PUBLIC = {
    "Case": "cryofield.config.case",
    "load_case": "cryofield.config.case",
    "parse_case": "cryofield.config.case",
    "run_case": "cryofield.run.runner",
    "RunReport": "cryofield.run.runner",
    "run_ensemble": "cryofield.run.ensemble",
    "read_result": "cryofield.io.results",
    "InputError": "cryofield.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    """Import a public name's module on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cryofield' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
