"""Boundary models: what happens on a tagged surface of the mesh, as a registry of interchangeable classes.

Two kinds of place use them (docs/physics.md §2, §5):

* ``probes[*].model``: a probe surface driven by the protocol (cold in a freeze, insulated in a passive
  thaw, warm in an active thaw). Built in: ``fixed`` (held at the phase's temperature), ``convective``
  (Robin exchange with the cryogen).
* ``boundaries[*].type``: a surface condition in force all the time. Built in: ``fixed``, ``insulated``,
  ``convection``, ``flux``.

A model is a subclass of :class:`BoundaryModel` decorated with :func:`register`. It owns

* its schema: ``Params``, a pydantic model of its keys in the case file (unknown keys refused);
* its assembly on the mesh: :meth:`BoundaryModel.assemble` adds its terms to the nodal
  :class:`BoundaryState` (held temperatures, lumped ``hA`` and ``hA T_amb + qA``);
* an optional :meth:`BoundaryModel.update`, called between time steps with the solver's state: a model
  whose terms change in time (a ramp, a controller) returns True and is assembled again;
* its bound on the stable step: :meth:`BoundaryModel.stability_conductance`, the largest ``hA`` it can
  put on each node.

Adding a model touches one new module in this package (found and imported automatically) and its test;
a model defined elsewhere (a plug-in, a test) registers itself the same way when its module is imported.

Examples
--------
>>> sorted(kind for role, kind in MODELS if role == "surface")
['convection', 'fixed', 'flux', 'insulated']
>>> parse_params("probe", "convective", {"heat_transfer_coefficient": 2500}).heat_transfer_coefficient
2500.0
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from ..schedule import Phase

Role = Literal["probe", "surface"]


class Params(BaseModel):
    """Base of every model's schema: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
class SolverView:
    """What :meth:`BoundaryModel.update` may read of the running solution."""

    t: float  # simulated time (s)
    temperature: np.ndarray  # (N,) nodal temperature (°C), host copy


class BoundaryModel(ABC):
    """One boundary model on one surface. Subclasses set ``kind``, ``role`` and ``Params``.

    Parameters
    ----------
    params
        The validated ``Params`` of this surface.
    surface
        Where the model acts.
    """

    kind: ClassVar[str]
    role: ClassVar[Role]
    Params: ClassVar[type[Params]] = Params
    #: Whether :meth:`update` needs the nodal temperature (a host copy each step; False spares it).
    reads_temperature: ClassVar[bool] = False

    def __init__(self, params: Params, surface: Surface):
        self.params, self.surface = params, surface

    @abstractmethod
    def assemble(self, state: BoundaryState, phase: Phase | None, t: float) -> None:
        """Add this model's terms at time ``t`` (s) in ``phase`` (None: the basal state, probes off)."""

    def update(self, view: SolverView) -> bool:
        """Advance internal state after an accepted step; True when the assembled terms changed."""
        return False

    def stability_conductance(self) -> np.ndarray:
        """(P,) the largest h*A (W/K) this model can put on each of its nodes, at any time."""
        return np.zeros(len(self.surface.nodes))


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
        key = ".".join(str(p) for p in err["loc"])
        raise PydanticCustomError("boundary_model", "{message}", {"message": message, "key": key}) from None


def build(role: Role, kind: str, params: Params, surface: Surface) -> BoundaryModel:
    """An instance of the registered model."""
    return MODELS[(role, kind)](params, surface)


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

    def update(self, t: float, temperature: Callable[[], np.ndarray]) -> bool:
        """Call every model's :meth:`~BoundaryModel.update`; True when any assembled term changed.

        ``temperature`` returns the nodal temperature (host copy), called only when a model reads it.
        """
        needs = any(model.reads_temperature for model in self.models)
        view = SolverView(t, temperature() if needs else np.empty(0))
        return any([model.update(view) for model in self.models])  # a list: every model updates

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
