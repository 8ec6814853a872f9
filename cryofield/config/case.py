"""The case file: schema, defaults, loading and validation.

A case is a YAML file. Temperatures are °C, durations seconds, material properties SI; lengths in the
mesh are in the declared ``mesh.units`` (``mm`` or ``m``). Unknown keys are refused. Relative paths are
relative to the case file.

The file is read strictly (:class:`CaseLoader`): a regular file of at most :data:`MAX_CASE_BYTES`, UTF-8,
no key given twice in a mapping, at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values
once aliases are expanded. ``name`` becomes the output file names, so it is a safe file stem
(:data:`NAME_PATTERN`); unset, it is the case file's stem, with unsafe characters replaced by ``_``.

Example
-------
.. code-block:: yaml

    name: demo
    mesh:
      file: tissue.msh          # Gmsh, Medit, VTU ... with region tags
      units: mm
      regions: {muscle: 1}
      surfaces: {probe: 10, outer: 11}
    tissues:
      muscle: {library: muscle}
    probes:
      - {name: probe, surface: probe}
    protocol:
      - {kind: freeze, duration: 90, temperature: -70}
      - {kind: passive_thaw, duration: 30}
      - {kind: freeze, duration: 90, temperature: -70}
    boundaries:
      - {surface: outer, type: fixed, temperature: 37}
"""

from __future__ import annotations

import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from cryofield.backends import BACKEND_CHOICES
from cryofield.config.meshspec import GENERATOR_KINDS, MeshSpec, ProbePlacement, Strict
from cryofield.errors import InputError, bounded
from cryofield.model import boundaries
from cryofield.model.boundaries import Params
from cryofield.model.curves import Curve, varying
from cryofield.model.materials import (
    AQUEOUS,
    DEFAULT_LIQUIDUS,
    DEFAULT_SOLIDUS,
    TISSUE_LIBRARY,
    Material,
    aqueous_entry,
)
from cryofield.model.quantities import Duration, Temperature
from cryofield.model.roles import Role, Thresholds
from cryofield.timestepping.schemes import SCHEMES


class TissueSpec(Strict):
    """A tissue: a library entry with overrides, or fully custom (every property given).

    Plausible ranges catch values in the wrong units (e.g. conductivity in mW/m/K).
    """

    library: str | None = None
    #: What the region is for the clinical summary and the pictures; unset, the library entry or the region's
    #: name decides (see :mod:`cryofield.model.roles`).
    role: Role | None = None
    density: Annotated[float, Field(ge=100, le=25000)] | None = None
    specific_heat: Annotated[float, Field(ge=100, le=10000)] | None = None
    conductivity: Annotated[float, Field(gt=0, le=100)] | None = None
    conductivity_frozen: Annotated[float, Field(gt=0, le=100)] | None = None
    heat_capacity_frozen: Annotated[float, Field(ge=1e5, le=1e7)] | None = None
    latent_heat: Annotated[float, Field(ge=0, le=5e8)] | None = None
    perfusion: Annotated[float, Field(ge=0, le=0.5)] | None = None
    metabolic_heat: Annotated[float, Field(ge=0, le=1e6)] | None = None
    solidus: Temperature | None = None
    liquidus: Temperature | None = None
    conductivity_table: list[tuple[Temperature, Annotated[float, Field(gt=0, le=100)]]] | None = None
    specific_heat_table: list[tuple[Temperature, Annotated[float, Field(ge=100, le=10000)]]] | None = None
    #: Mass fraction of water of an aqueous library medium (``water``, ``agar``, ``gelatin``): its tables,
    #: latent heat and properties are mixed again for it (:func:`cryofield.model.materials.aqueous_entry`).
    water_fraction: Annotated[float, Field(ge=0.5, le=1.0)] | None = None

    @model_validator(mode="after")
    def _aqueous(self):
        if self.water_fraction is not None and self.library not in AQUEOUS:
            raise ValueError(f"water_fraction belongs to an aqueous library medium ({', '.join(AQUEOUS)}), "
                             f"not to {self.library or 'a custom tissue'}")
        return self

    @field_validator("library")
    @classmethod
    def _known(cls, name):
        if name is not None and name not in TISSUE_LIBRARY:
            raise ValueError(f"unknown tissue '{name}'; the library has: {', '.join(TISSUE_LIBRARY)}")
        return name

    @field_validator("conductivity_table", "specific_heat_table")
    @classmethod
    def _increasing(cls, table):
        if table is not None:
            temps = [t for t, _ in table]
            if len(temps) < 2 or any(b <= a for a, b in zip(temps, temps[1:])):
                raise ValueError("a table needs at least two rows with strictly increasing temperatures")
        return table

    def material(self, name: str) -> Material:
        """The resolved :class:`Material`."""
        values = dict(TISSUE_LIBRARY[self.library]) if self.library else {}
        if self.water_fraction is not None:
            _, density, k_solids, c_solids = AQUEOUS[self.library]
            values = aqueous_entry(self.water_fraction, density, k_solids, c_solids)
        values.update(self.model_dump(exclude={"library", "role", "water_fraction"}, exclude_none=True))
        required = ["density", "specific_heat", "conductivity", "conductivity_frozen", "heat_capacity_frozen",
                    "latent_heat", "perfusion", "metabolic_heat"]
        missing = [k for k in required if k not in values]
        if missing:
            raise ValueError(f"custom tissue lacks {', '.join(missing)} (or name a 'library' tissue)")
        values.setdefault("solidus", DEFAULT_SOLIDUS)
        values.setdefault("liquidus", DEFAULT_LIQUIDUS)
        if values["solidus"] >= values["liquidus"]:
            raise ValueError(f"solidus ({values['solidus']} °C) must be below liquidus ({values['liquidus']} °C)")
        for key in ("conductivity_table", "specific_heat_table"):
            if key in values:
                values[key] = tuple(tuple(row) for row in values[key])
        return Material(name=name, **values)


class BloodSpec(Strict):
    """Arterial blood feeding the Pennes perfusion term."""

    density: Annotated[float, Field(ge=500, le=2000)] = 1050.0
    specific_heat: Annotated[float, Field(ge=1000, le=6000)] = 3617.0
    arterial_temperature: Temperature = 37.0

    @property
    def heat_capacity(self) -> float:
        return self.density * self.specific_heat


class ModelKeys(Strict):
    """A section whose remaining keys belong to a boundary model (:mod:`cryofield.model.boundaries`).

    The model's own schema validates them; after validation they hold every key of the model, defaults
    filled in, so the stored case says exactly what ran.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)
    _params: Params = PrivateAttr()

    @property
    def params(self) -> Params:
        """The model's validated parameters."""
        return self._params

    def _validate_model_keys(self, role: str, kind: str) -> None:
        self._params = boundaries.parse_params(role, kind, dict(self.model_extra or {}))
        self.__pydantic_extra__ = self._params.model_dump()


class ProbeSpec(ModelKeys):
    """A cryoprobe: a tagged surface of the mesh driven by the protocol.

    ``model`` names a registered probe model (:mod:`cryofield.model.boundaries.probes`), whose keys sit beside
    it: ``fixed`` holds the surface at the phase temperature; ``convective`` exchanges heat with the
    cryogen, ``-k dT/dn = h (T - T_phase)`` (key ``heat_transfer_coefficient``). With a phantom mesh,
    ``placement`` (gauge, active length and pose, :mod:`cryofield.config.meshspec`) embeds the needle in the mesh;
    its surface is then ``NAME_active`` (and its insulated shaft ``NAME_shaft``).
    """

    name: str
    surface: str | None = None
    placement: ProbePlacement | None = None
    model: str = "fixed"

    @model_validator(mode="after")
    def _surface(self):
        self._validate_model_keys("probe", self.model)
        if self.placement is None and self.surface is None:
            raise ValueError("give the probe's 'surface' (a tagged surface of the mesh) or its 'placement'")
        if self.placement is not None:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name):
                raise ValueError("a placed probe's name becomes a surface name: use letters, digits and '_'")
            active = f"{self.name}_active"
            if self.surface not in (None, active):
                raise ValueError(f"a placed probe's surface is '{active}'; remove 'surface'")
            if self.surface is None:
                self.surface = active
        return self


PhaseKind = Literal["freeze", "passive_thaw", "active_thaw", "hold"]
#: Probe temperature used when a phase gives none (°C).
DEFAULT_PHASE_TEMPERATURE = {"freeze": -70.0, "active_thaw": 20.0, "hold": 37.0}


class PhaseSpec(Strict):
    """One protocol phase.

    ``freeze``: probe at ``temperature`` (default −70 °C, must be below 0 °C). ``passive_thaw``: probe
    insulated. ``active_thaw``: probe warmed to ``temperature`` (default +20 °C, must be above 0 °C), or
    its heater run at ``power`` (W over the active surface) instead. ``hold``: probe held at
    ``temperature`` (default 37 °C). A ``temperature`` or ``power`` may be a table in time
    (:mod:`cryofield.model.curves`); a freeze then takes whatever set points its table gives (a real probe's
    surface starts warm and falls over the first minute).
    What "driven to" means is the probe model's (docs/physics.md §5):
    held, a Robin exchange, or a controller's set point.
    """

    kind: PhaseKind
    duration: Duration
    temperature: varying(Temperature) | None = None
    power: varying(Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]) | None = None

    @model_validator(mode="after")
    def _temperature_fits(self):
        t = self.temperature
        if self.power is not None and self.kind != "active_thaw":
            raise ValueError(f"only an active_thaw phase takes a heater power (this one is {self.kind})")
        if self.power is not None and t is not None:
            raise ValueError("give an active_thaw phase a temperature or a heater power, not both")
        if self.kind == "passive_thaw" and t is not None:
            raise ValueError("a passive_thaw phase insulates the probe and takes no temperature")
        if isinstance(t, Curve):
            return self  # a table gives the set points as they are
        if self.kind == "freeze" and t is not None and t >= 0:
            raise ValueError(f"a freeze phase needs a temperature below 0 °C (got {t})")
        if self.kind == "active_thaw" and t is not None and t <= 0:
            raise ValueError(f"an active_thaw phase needs a temperature above 0 °C (got {t})")
        return self

    @property
    def probe_temperature(self) -> float | Curve | None:
        """The temperature the probe is driven to, or None when it is insulated (or heated at a power)."""
        if self.kind == "passive_thaw" or self.power is not None:
            return None
        return self.temperature if self.temperature is not None else DEFAULT_PHASE_TEMPERATURE[self.kind]


class InitialSpec(Strict):
    """``basal``: the steady state with the case's boundaries, probes off. ``uniform``: one temperature."""

    type: Literal["basal", "uniform"] = "basal"
    temperature: Temperature = 37.0


class BoundarySpec(ModelKeys):
    """A condition on a tagged surface, in force all the time. Surfaces not listed are insulated.

    ``type`` names a registered surface model (:mod:`cryofield.model.boundaries.surfaces`), whose keys sit
    beside it: ``fixed`` (``temperature``), ``insulated``, ``convection`` (``heat_transfer_coefficient``,
    ``temperature``; default still room air) and ``flux`` (``heat_flux``, W/m² into the tissue, negative
    when heat is drawn out, e.g. the line heat sink of docs/physics.md §7).
    """

    surface: str
    type: str

    @model_validator(mode="after")
    def _model_keys(self):
        self._validate_model_keys("surface", self.type)
        return self


RegrowthRate = Annotated[float, Field(gt=0, le=20)]


class ClinicalSpec(Strict):
    """How the outcome is judged (docs/physics.md §4): the nerve-injury level (°C; −20 °C, Evans et al. 1981),
    the whole-section length at it that makes a block durable (mm), the range of axonal regrowth rates
    (mm/day, slowest first) and, per nerve, how far it runs on past the distal end of its centreline to its
    end organ (mm; the phantom gives the GON's). The fibre reading: how many fibres sample each nerve's
    cross-section, the levels (°C, warmest first) at which the injured fraction is reported, the injured
    fraction that counts as a complete block, and the shortest injured stretch of a fibre that counts
    (mm; 0: any point, as Wallerian degeneration follows a point injury)."""

    injury_c: Annotated[float, Field(ge=-196, le=0)] = -20.0
    durable_block_mm: Annotated[float, Field(gt=0, le=100)] = 4.0
    regrowth_mm_per_day: tuple[RegrowthRate, RegrowthRate] = (1.0, 2.0)
    end_organ_mm: dict[str, Annotated[float, Field(ge=0, le=2000)]] = {}
    fibres: Annotated[int, Field(ge=1, le=100_000)] = Thresholds.fibres
    fibre_levels_c: Annotated[list[Annotated[float, Field(ge=-196, le=37)]], Field(min_length=1, max_length=12)] \
        = list(Thresholds.fibre_levels_c)
    complete_block_fraction: Annotated[float, Field(gt=0, le=1)] = Thresholds.complete_block_fraction
    fibre_min_length_mm: Annotated[float, Field(ge=0, le=100)] = 0.0

    @field_validator("fibre_levels_c")
    @classmethod
    def _warmest_first(cls, levels):
        if any(b >= a for a, b in zip(levels, levels[1:])):
            raise ValueError("give the levels strictly decreasing, warmest first (e.g. [-5, -10, -20, -40, -60])")
        return levels

    @field_validator("regrowth_mm_per_day")
    @classmethod
    def _ordered(cls, rates):
        if rates[0] > rates[1]:
            raise ValueError("give the regrowth rates as [slowest, fastest]")
        return rates

    def thresholds(self):
        """The run's :class:`~cryofield.model.roles.Thresholds`."""
        lesion = (self.injury_c, *[c for c in Thresholds.lesion_c[1:] if c < self.injury_c])
        return Thresholds(lesion_c=lesion, durable_block_mm=self.durable_block_mm,
                          regrowth_mm_per_day=self.regrowth_mm_per_day, fibres=self.fibres,
                          fibre_levels_c=tuple(self.fibre_levels_c),
                          complete_block_fraction=self.complete_block_fraction,
                          fibre_min_length_mm=self.fibre_min_length_mm)


OutputField = Literal["temperature", "liquid_fraction", "enthalpy"]


class CheckpointSpec(Strict):
    """How often a run saves a checkpoint to resume from (:mod:`cryofield.run.checkpoint`): after ``wall``
    seconds of wall time or ``simulated`` seconds of simulated time, whichever comes first (null: never on
    that clock). A run asked to stop (SIGTERM, SIGINT) always saves one."""

    wall: Duration | None = 300.0
    simulated: Duration | None = None


class OutputSpec(Strict):
    """What is written and how often (seconds of simulated time)."""

    snapshot_interval: Duration = 10.0
    metrics_interval: Duration = 1.0
    fields: list[OutputField] = ["temperature"]
    isotherms: list[Temperature] = [-1.0, -20.0, -40.0]
    dose_thresholds: list[Temperature] = [-20.0, -40.0]
    checkpoint_interval: CheckpointSpec = CheckpointSpec()

    @field_validator("fields")
    @classmethod
    def _temperature_first(cls, fields):
        return ["temperature"] + [f for f in dict.fromkeys(fields) if f != "temperature"]


class SolverSpec(Strict):
    """Numerics.

    ``rkl2``: second-order Runge–Kutta–Legendre super time stepping, with the fewest stages that make each
    step stable. ``euler``: forward Euler at the explicit stability limit (a reference, slow on fine
    meshes). Steps adapt so that no node changes by more than about ``max_change`` K per step, up to
    ``max_dt`` s, and (rkl2, multirate) so that the estimated local time error of a step, about
    dt³ |d³T/dt³| / 6 at its worst node away from the solidus and liquidus, stays below ``tolerance`` K
    (default null: the nodal change alone; cryofield.timestepping.control.StepControl). ``safety`` scales the
    stability bound; ``stages`` fixes the RKL stage count (then ``max_dt`` must be stable with it).
    ``multirate``: RKL2 whose stages average the stiff nodes' own
    nested RKC stages (cryofield.timestepping.multirate; a single run, not an ensemble), the levels chosen from each
    node's explicit limit for the cheapest step of ``max_dt``, or cut where ``multirate_cuts`` says (level
    k + 1 holds the nodes whose spectral radius exceeds the largest over cut k; each cut > 1).
    """

    backend: Literal[BACKEND_CHOICES] = "auto"  # the registry's names: one list of them
    scheme: str = "rkl2"
    max_dt: Annotated[float, Field(gt=0, le=60)] = 2.0
    max_change: Annotated[float, Field(gt=0, le=100)] = 10.0
    tolerance: Annotated[float, Field(gt=0, le=100)] | None = None
    stages: Annotated[int, Field(ge=2, le=1000)] | None = None
    safety: Annotated[float, Field(gt=0, le=1.0)] = 0.9
    precision: Literal["float64", "float32"] = "float64"
    reorder: bool = True
    multirate_cuts: Annotated[list[Annotated[float, Field(gt=1, le=1e6)]], Field(min_length=1, max_length=6)] | None \
        = None

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, scheme: str) -> str:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme '{scheme}'; one of: {', '.join(SCHEMES)}")
        return scheme


#: A case name: it becomes the output file names ``NAME.h5`` ..., so letters, digits, ``.``, ``_`` and ``-``,
#: starting with a letter or digit, at most 100 characters (and not ending in ``.manifest``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_name(stem: str) -> str:
    """A case name made from a file stem: unsafe characters become ``_``, at most 100 characters.

    Examples
    --------
    >>> safe_name("my case (v2)"), safe_name("..."), safe_name("ok-1.2")
    ('my_case__v2_', 'case', 'ok-1.2')
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:100].removesuffix(".manifest")
    return name if NAME_PATTERN.fullmatch(name) else "case"


class Case(Strict):
    """A whole simulation case."""

    name: str = "case"
    description: str = ""
    mesh: MeshSpec
    tissues: dict[str, TissueSpec] = Field(default_factory=dict)
    blood: BloodSpec = BloodSpec()
    probes: list[ProbeSpec] = []
    protocol: list[PhaseSpec] = []
    initial: InitialSpec = InitialSpec()
    boundaries: list[BoundarySpec] = []
    outputs: OutputSpec = OutputSpec()
    solver: SolverSpec = SolverSpec()
    clinical: ClinicalSpec = ClinicalSpec()

    # Where the case came from (not part of the schema): relative paths resolve against base_dir.
    _base_dir: Path = PrivateAttr(default=Path("."))
    _source: str = PrivateAttr(default="<memory>")

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def source(self) -> str:
        return self._source

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not NAME_PATTERN.fullmatch(name) or name.endswith(".manifest"):
            raise ValueError(f"the name becomes the output file names: use 1 to 100 letters, digits, '.', '_' "
                             f"and '-', starting with a letter or digit (got {_short(name)})")
        return name

    @model_validator(mode="after")
    def _cross_checks(self):
        if self.mesh.phantom is None and any(p.placement is not None for p in self.probes):
            raise ValueError("probe placements need mesh.phantom (other meshes carry their probes as tagged surfaces)")
        if self.mesh.phantom is not None:
            for region, library in self.mesh.phantom.tissues().items():  # the regions default to their library tissue
                self.tissues.setdefault(region, TissueSpec(library=library))
        names = [p.name for p in self.probes]
        if len(set(names)) != len(names):
            raise ValueError("probe names must be unique")
        if self.protocol and not self.probes:
            raise ValueError("a protocol needs at least one probe")
        used = [b.surface for b in self.boundaries] + [p.surface for p in self.probes]
        dup = {s for s in used if used.count(s) > 1}
        if dup:
            raise ValueError(f"surface(s) {sorted(dup)} given more than one boundary condition or probe")
        return self

    @property
    def duration(self) -> float:
        """Total protocol time (s)."""
        return float(sum(p.duration for p in self.protocol))

    def materials(self) -> dict[str, Material]:
        """Resolved materials by region name."""
        out = {}
        for region, spec in self.tissues.items():
            try:
                out[region] = spec.material(region)
            except ValueError as exc:
                raise InputError(str(exc), source=self.source, key=f"tissues.{region}") from exc
        return out

    def resolve(self, path: str) -> Path:
        """A path from the case file, resolved against the case file's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


#: Largest case file (bytes); cases are a few kB.
MAX_CASE_BYTES = 1 << 20
#: Deepest nesting of mappings and sequences in a case file.
MAX_DEPTH = 32
#: Most values in a case file, counting each use of an alias in full.
MAX_NODES = 100_000


class CaseLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: a key given twice in a mapping, nesting deeper than :data:`MAX_DEPTH`
    or more than :data:`MAX_NODES` values with aliases expanded (an alias bomb) are errors."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _count_nodes(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: construct_mapping says so
                    continue
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {_short(key)} given twice (first at line {first.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep)


def _count_nodes(root) -> None:
    """Refuse a document with more than :data:`MAX_NODES` values once every alias is expanded."""
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_NODES} values once aliases are "
                                              "expanded (an alias bomb?)", node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))


def load_case(path: str | Path) -> Case:
    """Read and validate a case file.

    Raises
    ------
    InputError
        For a missing, unreadable or oversized file, one that is not a regular file or not UTF-8, malformed
        YAML (duplicate keys, too deep, too many values), unknown keys, wrong types or implausible values;
        the message names the file and the dotted key.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"cannot read case file: {exc.strerror}", source=str(path)) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError("a case file must be a regular file (not a directory, device or pipe)",
                             source=str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_CASE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read case file: {exc.strerror}", source=str(path)) from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_CASE_BYTES:
        raise InputError(f"the case file is larger than {MAX_CASE_BYTES >> 20} MiB", source=str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"the case file is not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} "
                         f"(byte offset {exc.start})", source=str(path)) from None
    return parse_case(text, source=str(path), base_dir=path.parent)


def parse_case(text: str, source: str = "<string>", base_dir: Path | str = ".") -> Case:
    """Validate a case given as YAML text (see :func:`load_case`)."""
    if len(text) > MAX_CASE_BYTES:
        raise InputError(f"the case is longer than {MAX_CASE_BYTES >> 20} MiB", source=source)
    try:
        data = yaml.load(text, Loader=CaseLoader)  # noqa: S506 (CaseLoader is a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise InputError(f"malformed YAML{where}: {bounded(problem, 300)}", source=source) from None
    if not isinstance(data, dict):
        raise InputError("a case file must be a YAML mapping of sections (mesh, tissues, ...)", source=source)
    if "name" not in data:
        data["name"] = safe_name(Path(source).stem) if source.endswith((".yaml", ".yml")) else "case"
    try:
        case = Case.model_validate(data)
    except ValidationError as exc:
        raise InputError(_first_error(exc), source=source, key=_error_key(exc)) from exc
    case._base_dir = Path(base_dir)
    case._source = source
    return case


def _error_key(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union", "curve-"))]
    if err["type"] == "boundary_model":  # a boundary model's own schema names the key inside the section
        loc.append(err["ctx"]["key"])
    return ".".join(p for p in loc if p not in GENERATOR_KINDS) or "(top level)"


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    if err["type"] not in ("extra_forbidden", "value_error", "missing", "boundary_model") and "input" in err:
        msg += f" (got {_short(err['input'])})"
    return bounded(msg, 500) + extra


_REPR = reprlib.Repr()
for _attr, _limit in {"maxlevel": 3, "maxdict": 4, "maxlist": 4, "maxtuple": 4, "maxset": 4, "maxfrozenset": 4,
                      "maxdeque": 4, "maxarray": 4, "maxstring": 60, "maxother": 60, "maxlong": 40}.items():
    setattr(_REPR, _attr, _limit)


def _short(value) -> str:
    """A repr of (user) input that stays short whatever the input's size (at most about 100 characters)."""
    return bounded(_REPR.repr(value), 100)


def case_to_yaml(case: Case) -> str:
    """The validated case, defaults filled in, as YAML (stored inside every result)."""
    return yaml.safe_dump(case.model_dump(mode="json", by_alias=True), sort_keys=False)
