"""Where a case's mesh comes from: a file, a generator or the occipital phantom; checked, in metres.

:func:`load` builds the mesh a :class:`~cryofield.config.meshspec.MeshSpec` describes; each generator ``kind``
has its function in :data:`GENERATE`. :func:`input_errors` is the one place where what the loaders raise
(:class:`~.placement.Placement`, :class:`~.anatomy.AnatomyError`, read errors) becomes an
:class:`~cryofield.errors.InputError` naming the case file and the key. :func:`mesh_of` loads a case's
mesh. :func:`estimated_nodes` says how large a generated mesh will be before it is generated, so that
:func:`load` refuses one far beyond this machine's memory (:mod:`cryofield.config.resources`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cryofield.config import resources
from cryofield.config.meshspec import (
    GAUGES,
    MeshSpec,
    PhantomSpec,
    ProbeInMediumGenerator,
    ProbePlacement,
    SlabGenerator,
    SphereShellGenerator,
)
from cryofield.errors import InputError
from cryofield.mesh import generators
from cryofield.mesh.anatomy import AnatomyError, PhantomGeometry
from cryofield.mesh.checks import check_mesh
from cryofield.mesh.core import Mesh
from cryofield.mesh.io import UNIT_SCALE, read_mesh
from cryofield.mesh.phantom import phantom_mesh
from cryofield.mesh.placement import Placement, PocketPlacement

if TYPE_CHECKING:
    from cryofield.config.case import Case


def _slab(gen: SlabGenerator, scale: float) -> Mesh:
    return generators.slab(gen.size, gen.cells, scale)


def _sphere_octant_shell(gen: SphereShellGenerator, scale: float) -> Mesh:
    return generators.sphere_octant_shell(gen.inner_radius, gen.outer_radius, gen.size_inner, gen.size_outer,
                                          scale)


#: The function that builds each generator ``kind`` of :data:`~cryofield.config.meshspec.GENERATOR_KINDS`:
#: ``(generator spec, scale of its lengths to metres) -> Mesh``.
def _probe_in_medium(gen: ProbeInMediumGenerator, scale: float) -> Mesh:
    from cryofield.mesh.medium import probe_in_medium

    return probe_in_medium(gen, scale)


GENERATE: dict[str, Callable[[Any, float], Mesh]] = {
    "slab": _slab,
    "sphere_octant_shell": _sphere_octant_shell,
    "probe_in_medium": _probe_in_medium,
}


def load(spec: MeshSpec, *, base_dir: Path | str = ".", placements: dict[str, ProbePlacement] | None = None,
         placement_keys: dict[str, str] | None = None, source: str | None = None, check_size: bool = True) -> Mesh:
    """The mesh ``spec`` describes, read or generated, checked (:func:`~.checks.check_mesh`), in metres.

    Parameters
    ----------
    base_dir
        What a relative ``spec.file`` is relative to (the case file's directory).
    placements
        Probe placements by probe name, carved out of a phantom (generated once, then from the cache).
    placement_keys
        The case key of each placement by probe name (``probes.0.placement``), for messages.
    source
        The file ``spec`` came from, for messages.
    check_size
        Refuse a generated mesh (or phantom) whose run would not fit in the memory available now
        (:func:`estimated_nodes`, :func:`cryofield.config.resources.run_memory`); ``--force`` turns it off.

    Raises
    ------
    InputError
        For a mesh that cannot be read, built or used, naming the file (``source`` or the mesh file) and
        the key (see :func:`input_errors`).
    """
    with input_errors(source, placement_keys):
        if spec.file is not None:
            path = Path(base_dir) / Path(spec.file).expanduser()  # an absolute file stays as it is
            mesh = read_mesh(path, spec.units, spec.regions, spec.surfaces, spec.tag_array)
        else:
            if spec.regions is not None or spec.surfaces is not None:
                what = "the phantom" if spec.phantom is not None else "a generated mesh"
                raise InputError(f"{what} names its own regions and surfaces; remove regions/surfaces",
                                 key="mesh")
            if check_size:
                check_generated_size(spec, placements or {})
            if spec.phantom is not None:
                mesh, _ = phantom_mesh(spec.phantom, placements or {})
            else:
                mesh = GENERATE[spec.generate.kind](spec.generate, UNIT_SCALE[spec.units])
        return check_mesh(mesh, spec.units)


@contextmanager
def input_errors(source: str | None, placement_keys: dict[str, str] | None = None) -> Iterator[None]:
    """Turn what loading a mesh raises into :class:`InputError` naming ``source`` and the case key.

    A :class:`Placement` gets the key of its probe's placement (``placement_keys[probe]``, else
    ``probes``), an :class:`AnatomyError` ``mesh.phantom.anatomy``; an :class:`InputError` (a read
    error, a refused mesh) that names no file gets ``source``.
    """
    try:
        yield
    except Placement as exc:
        key = (placement_keys or {}).get(exc.probe, "probes")
        raise InputError(f"probe '{exc.probe}' cannot be placed: {exc}", source=source, key=key) from exc
    except PocketPlacement as exc:
        raise InputError(f"fluid pocket {exc.index + 1} cannot be placed: {exc}", source=source,
                         key=f"mesh.phantom.pockets.{exc.index}") from exc
    except AnatomyError as exc:
        raise InputError(str(exc), source=source, key="mesh.phantom.anatomy") from exc
    except InputError as exc:
        exc.source = exc.source or source
        raise


def case_placements(case: Case) -> tuple[dict[str, ProbePlacement], dict[str, str]]:
    """The case's probe placements by probe name, and the case key of each (``probes.N.placement``)."""
    placed = [(i, p) for i, p in enumerate(case.probes) if p.placement is not None]
    return {p.name: p.placement for _, p in placed}, {p.name: f"probes.{i}.placement" for i, p in placed}


def mesh_of(case: Case, check_size: bool = True) -> Mesh:
    """The case's mesh: :func:`load` with the case's directory, file name and probe placements."""
    placements, keys = case_placements(case)
    return load(case.mesh, base_dir=case.base_dir, placements=placements, placement_keys=keys,
                source=case.source, check_size=check_size)


def check_generated_size(spec: MeshSpec, placements: dict[str, ProbePlacement]) -> None:
    """Refuse to generate a mesh whose run would need more memory than is available now."""
    nodes = estimated_nodes(spec, placements)
    available = resources.available_memory()
    if nodes is None or available is None or resources.run_memory(nodes) <= available:
        return
    key = "mesh.phantom.sizes" if spec.phantom is not None else "mesh.generate"
    raise InputError(f"the requested mesh would have about {nodes:.3g} nodes, and a run on it needs about "
                     f"{resources.gb(resources.run_memory(nodes))} of memory, but {resources.gb(available)} is "
                     "available; use coarser sizes, or --force to try anyway", key=key)


def estimated_nodes(spec: MeshSpec, placements: dict[str, ProbePlacement] | None = None) -> float | None:
    """Nodes the generated mesh ``spec`` will have, roughly (None for a mesh file).

    A slab: exact. A sphere-octant shell: the integral of volume / size³ (Gmsh's tetrahedra give about one
    node per size³). The phantom: the same sum over its zones (box at ``far``, skin layer, vessels, the
    graded zone round each probe), scaled to the presets' measured counts (coarse about 54 k nodes).

    Examples
    --------
    >>> from cryofield.config.meshspec import MeshSpec
    >>> estimated_nodes(MeshSpec(generate={"kind": "slab", "size": [1, 1, 1], "cells": [2, 3, 4]}))
    60.0
    """
    gen = spec.generate
    if gen is not None and gen.kind == "slab":
        return float(np.prod([c + 1.0 for c in gen.cells]))
    if gen is not None and gen.kind == "sphere_octant_shell":
        r = np.linspace(gen.inner_radius, gen.outer_radius, 1001)
        h = gen.size_inner + (gen.size_outer - gen.size_inner) * (r - r[0]) / (r[-1] - r[0])
        return float(np.trapezoid(np.pi / 2 * r**2 / h**3, r))
    if gen is not None and gen.kind == "probe_in_medium":
        from cryofield.mesh.medium import estimated_nodes as medium_nodes

        return medium_nodes(gen)
    if spec.phantom is not None:
        return _phantom_nodes(spec.phantom, placements or {})
    return None


def _phantom_nodes(spec: PhantomSpec, placements: dict[str, ProbePlacement]) -> float:
    sizes, anatomy = spec.resolved_sizes(), spec.anatomy
    geometry = PhantomGeometry(anatomy, spec.side)
    far = sizes["far"]
    area = (anatomy.medial_extent + anatomy.lateral_extent) * (anatomy.superior_extent + anatomy.inferior_extent)
    n = area * geometry.depth / far**3 + area * 2 * geometry.z_skin / min(sizes["skin"], far) ** 3
    for course in geometry.courses.values():
        lo, hi = course.bounds
        size = 2 * course.radius / sizes["vessel_divisions"]
        n += np.pi * course.radius**2 * (hi - lo) / size**3
        n += _graded(hi - lo, [(course.radius, course.radius + 4 * far, size, far)])
    for placement in placements.values():
        d = GAUGES[placement.gauge]
        r, radius = d / 2, sizes["ice_radius"]
        tip, ice = min(sizes["tip"], np.pi * d / 12), sizes["ice"]
        n += _graded(placement.active_length, [(r, r + radius / 2, tip, ice), (r + radius / 2, r + radius, ice, ice),
                                               (r + radius, r + radius + 4 * far, ice, far)])
    return float(0.65 * n)  # the zones overlap: scaled to the presets' measured node counts


def _graded(length: float, zones: list[tuple[float, float, float, float]]) -> float:
    """Nodes (volume / size³) round a segment of ``length``: size linear from ``h0`` to ``h1`` between
    distances ``a`` and ``b`` from it in each zone ``(a, b, h0, h1)`` (a cylinder with spherical ends)."""
    total = 0.0
    for a, b, h0, h1 in zones:
        rho = np.linspace(a, b, 401)
        h = h0 + (h1 - h0) * (rho - a) / (b - a)
        total += float(np.trapezoid((2 * np.pi * rho * length + 4 * np.pi * rho**2) / h**3, rho))
    return total
