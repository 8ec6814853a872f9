"""The sweep file's schema (documented in :mod:`cryofield.sweep`) and its loading.

Examples
--------
>>> spec = SweepSpec.model_validate({"base": "case.yaml", "axes": [{"path": "protocol.0.duration",
...                                   "values": [30, 60]}]})
>>> spec.design, spec.axes[0].paths, spec.axes[0].column, spec.cluster.kind
('grid', ['protocol.0.duration'], 'protocol.0.duration', 'local')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cryofield.backends import BACKEND_CHOICES
from cryofield.errors import InputError

#: A dotted path into a case: mapping keys and list indices (``protocol.0.duration``).
PATH_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.([A-Za-z0-9_][A-Za-z0-9_-]*))*")
#: Memory as dask and SLURM read it: ``16GB``, ``4000MiB``.
MEMORY_PATTERN = re.compile(r"\d+(\.\d+)?\s*([kKMGTP]i?)?B")
#: A SLURM time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM`` or ``D-HH:MM:SS``.
WALLTIME_PATTERN = re.compile(r"(\d+-)?\d+(:\d\d){0,2}")

Scalar = bool | int | float | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Uniform(Strict):
    kind: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _order(self):
        if self.high <= self.low:
            raise ValueError("high must exceed low")
        return self


class Normal(Strict):
    """A normal distribution, truncated to [low, high] where either is given."""

    kind: Literal["normal"]
    mean: float
    std: Annotated[float, Field(gt=0)]
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _order(self):
        if self.low is not None and self.high is not None and self.high <= self.low:
            raise ValueError("high must exceed low")
        return self


class TruncatedNormal(Normal):
    """A normal distribution truncated to [low, high] (both required)."""

    kind: Literal["truncated_normal"]
    low: float
    high: float


class LogNormal(Strict):
    """``exp(N(ln median, sigma²))``, truncated to [low, high] where either is given."""

    kind: Literal["lognormal"]
    median: Annotated[float, Field(gt=0)]
    sigma: Annotated[float, Field(gt=0)]
    low: Annotated[float, Field(ge=0)] | None = None
    high: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _order(self):
        if self.low is not None and self.high is not None and self.high <= self.low:
            raise ValueError("high must exceed low")
        return self


Distribution = Annotated[Uniform | Normal | TruncatedNormal | LogNormal, Field(discriminator="kind")]


class Range(Strict):
    """``count`` evenly spaced values from ``low`` to ``high`` (both included)."""

    low: float
    high: float
    count: Annotated[int, Field(ge=2, le=10_000)]


class Axis(Strict):
    """One thing that varies: one or more case keys (``path``) that take the same value."""

    path: str | list[str]
    name: str | None = None
    values: Annotated[list[Any], Field(min_length=1)] | None = None
    range: Range | None = None
    distribution: Distribution | None = None
    integer: bool = False

    @field_validator("path")
    @classmethod
    def _paths(cls, path):
        paths = [path] if isinstance(path, str) else path
        if not paths:
            raise ValueError("give at least one path")
        for p in paths:
            if not PATH_PATTERN.fullmatch(p):
                raise ValueError(f"not a dotted path of case keys: {p!r} (e.g. protocol.0.duration)")
        return path

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("values", "range", "distribution") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'values', 'range' or 'distribution'")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def column(self) -> str:
        """The axis's column in the results table."""
        return self.name or self.paths[0]

    @property
    def may_change_mesh(self) -> bool:
        """Whether a value of this axis can give another mesh: a ``mesh`` key, or a probe's ``placement`` or
        ``surface`` (the needle is meshed into the phantom). Tissue, protocol, probe settings do not."""
        for p in self.paths:
            parts = p.split(".")
            if parts[0] == "mesh" or (parts[0] == "probes" and len(parts) > 2 and parts[2] in ("placement", "surface")):
                return True
        return False


def _memory_limit(value: str) -> str:
    if value != "auto" and not MEMORY_PATTERN.fullmatch(value):
        raise ValueError(f"memory per worker like '4GB', or 'auto' (got {value!r})")
    return value


class LocalClusterSpec(Strict):
    """A :class:`distributed.LocalCluster` on this machine (one variant at a time per worker process)."""

    kind: Literal["local"] = "local"
    workers: Annotated[int, Field(ge=1, le=1024)] | None = None
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    memory_limit: str = "auto"

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value):
        return _memory_limit(value)


class LocalCudaClusterSpec(Strict):
    """``dask_cuda.LocalCUDACluster``: one worker per GPU."""

    kind: Literal["local-cuda"]
    devices: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = None
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    memory_limit: str = "auto"

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value):
        return _memory_limit(value)

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices):
        if devices is not None and len(set(devices)) != len(devices):
            raise ValueError("a GPU listed twice would be shared by two workers")
        return devices


class SlurmClusterSpec(Strict):
    """Workers as SLURM jobs through ``dask_jobqueue.SLURMCluster``."""

    kind: Literal["slurm"]
    queue: str | None = None
    account: str | None = None
    cores: Annotated[int, Field(ge=1, le=4096)]
    memory: str
    walltime: str = "01:00:00"
    processes: Annotated[int, Field(ge=1, le=4096)] = 1
    jobs: Annotated[int, Field(ge=1, le=10_000)] = 1
    job_extra_directives: list[str] = []
    job_script_prologue: list[str] = []
    log_directory: str | None = None
    local_directory: str | None = None
    interface: str | None = None
    python: str | None = None
    job_name: str = "cryofield"

    @field_validator("memory")
    @classmethod
    def _memory(cls, value):
        if not MEMORY_PATTERN.fullmatch(value):
            raise ValueError(f"memory per job like '16GB' (got {value!r})")
        return value

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value):
        if not WALLTIME_PATTERN.fullmatch(value):
            raise ValueError(f"a SLURM time limit like '01:30:00' or '1-00:00:00' (got {value!r})")
        return value

    @field_validator("job_extra_directives", "job_script_prologue")
    @classmethod
    def _one_line(cls, lines):
        if any("\n" in line for line in lines):
            raise ValueError("one line per item")
        return lines

    @model_validator(mode="after")
    def _divides(self):
        if self.cores % self.processes:
            raise ValueError(f"processes ({self.processes}) must divide cores ({self.cores}): each variant "
                             "gets cores / processes of them")
        return self


ClusterSpec = Annotated[LocalClusterSpec | LocalCudaClusterSpec | SlurmClusterSpec, Field(discriminator="kind")]


#: The designs that sample their axes (a distribution or values), and all of them (the others list or zip the
#: axes' values); :data:`cryofield.sweep.design.ROWS` makes each one's rows.
SAMPLED_DESIGNS = ("lhs", "random")
DESIGNS = ("grid", "zip", *SAMPLED_DESIGNS)


class SweepSpec(Strict):
    """A whole sweep file (see :mod:`cryofield.sweep`)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")] = "sweep"
    description: str = ""
    base: str | dict[str, Any]
    design: Literal[DESIGNS] = "grid"
    samples: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    axes: Annotated[list[Axis], Field(min_length=1)]
    backend: Literal[BACKEND_CHOICES] | None = None  # the registry's names: one list of them
    retries: Annotated[int, Field(ge=0, le=100)] = 2
    #: Most variants stepped together as one ensemble (:mod:`cryofield.run.ensemble`) when they share a mesh; 1: never.
    ensemble_size: Annotated[int, Field(ge=1, le=4096)] = 64
    target_nerve: str | None = None
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    interval: Literal["wilson", "clopper-pearson"] = "wilson"
    cluster: ClusterSpec = LocalClusterSpec()

    @model_validator(mode="after")
    def _design_fits(self):
        sampled = self.design in SAMPLED_DESIGNS
        for i, axis in enumerate(self.axes):
            if sampled and axis.range is not None:
                raise ValueError(f"axes.{i}: a {self.design} design samples a 'distribution' or 'values'; "
                                 "a 'range' belongs to grid and zip designs (use a uniform distribution)")
            if not sampled and axis.distribution is not None:
                raise ValueError(f"axes.{i}: a {self.design} design takes 'values' or a 'range'; "
                                 "a 'distribution' needs design lhs or random")
        if sampled and self.samples is None:
            raise ValueError(f"a {self.design} design needs 'samples'")
        if not sampled and (self.samples is not None or self.seed is not None):
            raise ValueError(f"'samples' and 'seed' belong to lhs and random designs, not {self.design}")
        if self.design == "zip":
            lengths = {len(_listed(a)) for a in self.axes}
            if len(lengths) > 1:
                raise ValueError(f"a zip design needs every axis to have as many values (got {sorted(lengths)})")
        columns = [a.column for a in self.axes]
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise ValueError(f"axis name(s) {dup} used twice: give each axis its own 'name'")
        paths = [p for a in self.axes for p in a.paths]
        dup = sorted({p for p in paths if paths.count(p) > 1})
        if dup:
            raise ValueError(f"path(s) {dup} varied by more than one axis")
        return self


def _listed(axis: Axis) -> list:
    """The values of a grid or zip axis."""
    if axis.values is not None:
        return list(axis.values)
    r = axis.range
    return [r.low + (r.high - r.low) * k / (r.count - 1) for k in range(r.count)]


@dataclass
class Sweep:
    """A validated sweep file with its base case as a mapping (not yet expanded into variants)."""

    spec: SweepSpec
    base: dict[str, Any]  # the base case as written (YAML mapping)
    base_dir: Path  # what the base case's relative paths are relative to
    base_source: str  # the base case's file (or the sweep file, for an inline base)
    source: str  # the sweep file
    text: str  # the sweep file as written


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file and read its base case (not yet expanded, see :mod:`.variants`).

    Raises
    ------
    InputError
        For an unreadable or malformed file, unknown keys, bad values or an unreadable base case, naming
        the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read sweep file: {getattr(exc, 'strerror', None) or exc}", source=str(path)) from exc
    return parse_sweep(text, source=str(path), base_dir=path.parent)


def parse_sweep(text: str, source: str = "<string>", base_dir: Path | str = ".") -> Sweep:
    """Validate a sweep given as YAML text (see :func:`load_sweep`)."""
    from cryofield.config.case import CaseLoader

    try:
        data = yaml.load(text, Loader=CaseLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}", source=source) from None
    if not isinstance(data, dict):
        raise InputError("a sweep file must be a YAML mapping (base, design, axes, ...)", source=source)
    if "name" not in data and source.endswith((".yaml", ".yml")):
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "_", Path(source).stem).lstrip("._-")[:100] or "sweep"
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(_message(exc), source=source, key=_key(exc)) from None
    base_dir = Path(base_dir)
    if isinstance(spec.base, str):
        base_path = Path(spec.base).expanduser()
        base_path = base_path if base_path.is_absolute() else base_dir / base_path
        try:
            base_text = base_path.read_text(encoding="utf-8")
            base = yaml.load(base_text, Loader=CaseLoader)  # noqa: S506 (a SafeLoader)
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the base case: {getattr(exc, 'strerror', None) or exc}",
                             source=source, key="base") from None
        except yaml.YAMLError as exc:
            raise InputError(f"the base case {base_path} is malformed YAML: {exc}", source=source, key="base") from None
        if not isinstance(base, dict):
            raise InputError(f"the base case {base_path} is not a case (a YAML mapping)", source=source, key="base")
        return Sweep(spec, base, base_path.parent, str(base_path), source, text)
    base = dict(spec.base)
    base.setdefault("name", spec.name)
    return Sweep(spec, base, base_dir, source, source, text)


def _key(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    kinds = {"local", "local-cuda", "slurm", "uniform", "normal", "truncated_normal", "lognormal",
             "str", "list[str]", "list[any]"}
    return ".".join(p for p in loc if p not in kinds and not p.startswith(("function-", "tagged-union"))) \
        or "(top level)"


def _message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    if err["type"] not in ("extra_forbidden", "value_error", "missing") and "input" in err:
        msg += f" (got {str(err['input'])[:80]!r})"
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    return msg + more
