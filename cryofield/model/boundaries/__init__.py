"""Boundary models: what happens on a tagged surface of the mesh, as a registry of interchangeable classes.

Two kinds of place use them (docs/physics.md §2, §5):

* ``probes[*].model``: a probe surface driven by the protocol (cold in a freeze, insulated in a passive
  thaw, warm in an active thaw). Built in: ``fixed`` (held at the phase's temperature), ``convective``
  (Robin exchange at the phase's temperature), ``cryogen`` (Robin exchange with a cryogen preset) and
  ``controlled`` (a thermocouple and a PI controller on the cryogen flow), in :mod:`.probes`,
  :mod:`.cryogen_probe` and :mod:`.controlled_probe`.
* ``boundaries[*].type``: a surface condition in force all the time. Built in: ``fixed``, ``insulated``,
  ``convection``, ``flux`` (in :mod:`.surfaces`); ``warmer`` (a skin warmer, :mod:`.warmer`) and ``vessel``
  (an artery's lumen wall, :mod:`.vessel`).

A model is a subclass of :class:`BoundaryModel` decorated with :func:`register`. It owns

* its schema: ``Params``, a pydantic model of its keys in the case file (unknown keys refused);
* its assembly on the mesh: :meth:`BoundaryModel.assemble` adds its terms to the nodal
  :class:`BoundaryState` (held temperatures, lumped ``hA`` and ``hA T_amb + qA``);
* an optional :meth:`BoundaryModel.update`, called between time steps with the solver's state: a model
  whose terms change in time (a ramp, a controller) returns True and is assembled again;
* its bound on the stable step: :meth:`BoundaryModel.stability_conductance`, the largest ``hA`` it can
  put on each node.

A model that keeps time series (a device: a controller, a heater) subclasses
:class:`~cryofield.model.boundaries.recording.RecordingModel`, which writes its records, summary and
checkpoint state.

Adding a model touches one new module in this package (found and imported automatically) and its test;
a model defined elsewhere (a plug-in, a test) registers itself the same way when its module is imported.

Examples
--------
>>> sorted(kind for role, kind in MODELS if role == "surface")
['convection', 'fixed', 'flux', 'insulated', 'vessel', 'warmer']
>>> parse_params("probe", "convective", {"heat_transfer_coefficient": 2500}).heat_transfer_coefficient
2500.0
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from cryofield.model.schedule import Phase

Role = Literal["probe", "surface"]


class Params(BaseModel):
    """Base of every model's schema: unknown keys are errors, numbers finite, values checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


@dataclass
class BoundaryState:
    """Boundary conditions in force at one time, as nodal arrays."""

    fixed: np.ndarray  # (N,) bool: node held at a fixed temperature
    fixed_temperature: np.ndarray  # (N,) °C where fixed
    robin_coef: np.ndarray  # (N,) W/K: lumped h*A
    robin_rhs: np.ndarray  # (N,) W: lumped h*A*T_ambient plus imposed heat flow q*A

    @classmethod
    def empty(cls, n_nodes: int) -> BoundaryState:
        """Every surface insulated."""
        return cls(np.zeros(n_nodes, bool), np.zeros(n_nodes), np.zeros(n_nodes), np.zeros(n_nodes))


@dataclass(frozen=True)
class Surface:
    """A tagged surface as the models see it: its nodes and the lumped area of each (m²)."""

    name: str
    nodes: np.ndarray  # (P,) node indices
    area: np.ndarray  # (P,) lumped facet area at each node (m²)
    facets: np.ndarray  # (F, 3) triangles (node indices)


@dataclass(frozen=True)
class Context:
    """What a model may know of the problem beyond its surface, given when it is built (all optional).

    ``name``: the probe's name (or the surface's, for a boundary); ``points`` (N, 3, metres) and ``tets``
    (E, 4) of the mesh the solver runs on; ``metadata``: the mesh's metadata (metres; probe poses,
    centrelines, sections); ``length_scale``: metres per unit of the case's mesh lengths (a point a case
    gives in ``mesh.units``); ``key``: the model's place in the case (``probes.0``), for messages.
    """

    name: str = ""
    points: np.ndarray | None = None
    tets: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    length_scale: float = 1.0
    key: str = ""


def phase_start(phase: Phase | None) -> float:
    """When ``phase`` started (s); 0 for the basal state (or a phase not placed on the time axis: a case's
    ``PhaseSpec``). Phase-local curves count from it."""
    return float(getattr(phase, "start", 0.0))


def _no_reader(nodes: np.ndarray) -> np.ndarray:
    raise RuntimeError("no temperatures to read here")


@dataclass(frozen=True)
class SolverView:
    """What :meth:`BoundaryModel.update` may read of the running solution.

    ``temperature`` is the whole nodal field (a host copy), filled only when a model sets
    ``reads_temperature``; ``temperature_at(nodes)`` reads just the nodes a model needs (a sensor, its
    surface), which is what models should prefer.
    """

    t: float  # simulated time (s)
    temperature: np.ndarray  # (N,) nodal temperature (°C), host copy
    temperature_at: Callable[[np.ndarray], np.ndarray] = _no_reader  # nodes -> their temperatures (°C), float64


class BoundaryModel(ABC):
    """One boundary model on one surface. Subclasses set ``kind``, ``role`` and ``Params``.

    Parameters
    ----------
    params
        The validated ``Params`` of this surface.
    surface
        Where the model acts.
    context
        The rest of the problem a model may need (a sensor point's element, the probe's pose): :class:`Context`.
    """

    kind: ClassVar[str]
    role: ClassVar[Role]
    Params: ClassVar[type[Params]] = Params
    #: Whether :meth:`update` needs the nodal temperature (a host copy each step; False spares it).
    reads_temperature: ClassVar[bool] = False
    #: Whether the model may act on an interior surface (between two tetrahedra, e.g. a vessel wall inside
    #: the tissue); a plain boundary condition may not, it would cut the heat flow there in two.
    allows_interior: ClassVar[bool] = False

    def __init__(self, params: Params, surface: Surface, context: Context | None = None):
        self.params, self.surface, self.context = params, surface, context or Context(surface.name)

    @abstractmethod
    def assemble(self, state: BoundaryState, phase: Phase | None, t: float) -> None:
        """Add this model's terms at time ``t`` (s) in ``phase`` (None: the basal state, probes off)."""

    def update(self, view: SolverView) -> bool:
        """Advance internal state after an accepted step; True when the assembled terms changed."""
        return False

    def curves(self) -> list:
        """The :class:`~cryofield.model.curves.Curve` values among this model's keys (a model with any is assembled
        again after every step)."""
        from cryofield.model.curves import Curve

        return [v for v in dict(self.params).values() if isinstance(v, Curve)]

    def stability_conductance(self) -> np.ndarray:
        """(P,) the largest h*A (W/K) this model can put on each of its nodes, at any time."""
        return np.zeros(len(self.surface.nodes))

    def records(self) -> dict[str, np.ndarray]:
        """Time series the model kept (a controller's u(t), a heater's power), arrays of equal length with
        ``time`` first; written to the result under ``/devices/NAME``. Nothing by default."""
        return {}

    def summary(self) -> dict:
        """A few figures of the run for the JSON summary (``devices``); nothing by default."""
        return {}

    def state(self) -> dict[str, float | np.ndarray]:
        """The model's internal state (a controller's integral, a cartridge's charge), for checkpoints.

        A model whose :meth:`update` keeps state returns it here and takes it back in :meth:`restore`, so
        that a resumed run continues exactly as the interrupted one would have.
        """
        return {}

    def restore(self, state: dict[str, float | np.ndarray]) -> None:
        """Take back what :meth:`state` returned."""


#: (role, kind) -> model class.
MODELS: dict[tuple[str, str], type[BoundaryModel]] = {}


def register(cls: type[BoundaryModel]) -> type[BoundaryModel]:
    """Class decorator: make ``cls`` available as ``model: KIND`` (probes) or ``type: KIND`` (boundaries)."""
    MODELS[(cls.role, cls.kind)] = cls
    return cls


def kinds(role: Role) -> list[str]:
    """The registered kinds for ``role``."""
    return sorted(kind for r, kind in MODELS if r == role)


def parse_params(role: Role, kind: str, values: dict) -> Params:
    """Validate a surface's model keys against its model's schema.

    Raises
    ------
    pydantic_core.PydanticCustomError
        ``boundary_model`` with the offending key in its context, for pydantic to report in place.
    """
    cls = MODELS.get((role, kind))
    if cls is None:
        field = "model" if role == "probe" else "type"
        raise PydanticCustomError("boundary_model", "unknown {role} model '{kind}' (choose from {choices})",
                                  {"role": role, "kind": kind, "choices": ", ".join(kinds(role)), "key": field})
    try:
        return cls.Params.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        key = ".".join(str(p) for p in err["loc"] if not str(p).startswith("curve-"))  # tags of curves.varying
        raise PydanticCustomError("boundary_model", "{message}", {"message": message, "key": key}) from None


def build(role: Role, kind: str, params: Params, surface: Surface, context: Context | None = None) -> BoundaryModel:
    """An instance of the registered model."""
    return MODELS[(role, kind)](params, surface, context)


class BoundarySet:
    """Every boundary model of a problem; assembles the nodal :class:`BoundaryState` at any time.

    Parameters
    ----------
    models
        Surface conditions (always on) and probe models (driven by the protocol phase).
    n_nodes
        Nodes of the mesh.
    """

    def __init__(self, models: list[BoundaryModel], n_nodes: int):
        self.models, self.n_nodes = models, n_nodes

    def state(self, phase: Phase | None, t: float = 0.0) -> BoundaryState:
        """The nodal conditions at ``t`` in ``phase`` (None: the basal state, probes off)."""
        state = BoundaryState.empty(self.n_nodes)
        for model in self.models:
            model.assemble(state, phase, t)
        return state

    def update(self, t: float, temperature: Callable[[], np.ndarray],
               temperature_at: Callable[[np.ndarray], np.ndarray] | None = None) -> bool:
        """Call every model's :meth:`~BoundaryModel.update`; True when any assembled term changed.

        ``temperature`` returns the nodal temperature (host copy), called only when a model reads it;
        ``temperature_at(nodes)`` those of a few nodes (by default taken from ``temperature()``).
        """
        needs = any(model.reads_temperature for model in self.models)
        field_now = temperature() if needs else np.empty(0)
        if temperature_at is None:
            def temperature_at(nodes: np.ndarray) -> np.ndarray:
                return (field_now if needs else temperature())[nodes]
        view = SolverView(t, field_now, temperature_at)
        changed = any([model.update(view) for model in self.models])  # a list: every model updates
        return changed or self.timed

    @property
    def timed(self) -> bool:
        """Whether a model has a value given as a table in time (then every step re-assembles the terms)."""
        if not hasattr(self, "_timed"):
            self._timed = any(model.curves() for model in self.models)
        return self._timed

    def curves(self) -> list:
        """Every model's :meth:`~BoundaryModel.curves`."""
        return [c for model in self.models for c in model.curves()]

    def devices(self) -> list[BoundaryModel]:
        """The models that keep :meth:`~BoundaryModel.records` (controllers, heaters), in order."""
        return [model for model in self.models if type(model).records is not BoundaryModel.records]

    def model_states(self) -> list[dict]:
        """Every model's :meth:`~BoundaryModel.state`, in order."""
        return [model.state() for model in self.models]

    def restore_models(self, states: list[dict]) -> None:
        """Give every model back its state (from :meth:`state`)."""
        for model, state in zip(self.models, states, strict=True):
            model.restore(state)

    def stability_conductance(self) -> np.ndarray:
        """(N,) the largest h*A (W/K) all models together can put on each node."""
        out = np.zeros(self.n_nodes)
        for model in self.models:
            np.add.at(out, model.surface.nodes, model.stability_conductance())
        return out


def _import_builtin_models() -> None:
    """Import every module of this package, so that the models they define register themselves."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_builtin_models()
