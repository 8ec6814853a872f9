"""Where a case's mesh comes from: a file, a generator or the occipital phantom; checked, in metres.

:func:`load` builds the mesh a :class:`~cryofield.meshspec.MeshSpec` describes; each generator ``kind``
has its function in :data:`GENERATE`. :func:`input_errors` is the one place where what the loaders raise
(:class:`~.placement.Placement`, :class:`~.anatomy.AnatomyError`, read errors) becomes an
:class:`~cryofield.errors.InputError` naming the case file and the key. :func:`mesh_of` loads a case's
mesh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..meshspec import MeshSpec, ProbePlacement, SlabGenerator, SphereShellGenerator
from . import generators
from .anatomy import AnatomyError
from .checks import check_mesh
from .core import Mesh
from .io import UNIT_SCALE, read_mesh
from .phantom import phantom_mesh
from .placement import Placement

if TYPE_CHECKING:
    from ..case import Case


def _slab(gen: SlabGenerator, scale: float) -> Mesh:
    return generators.slab(gen.size, gen.cells, scale)


def _sphere_octant_shell(gen: SphereShellGenerator, scale: float) -> Mesh:
    return generators.sphere_octant_shell(gen.inner_radius, gen.outer_radius, gen.size_inner, gen.size_outer,
                                          scale)


#: The function that builds each generator ``kind`` of :data:`~cryofield.meshspec.GENERATOR_KINDS`:
#: ``(generator spec, scale of its lengths to metres) -> Mesh``.
GENERATE: dict[str, Callable[[Any, float], Mesh]] = {
    "slab": _slab,
    "sphere_octant_shell": _sphere_octant_shell,
}


def load(spec: MeshSpec, *, base_dir: Path | str = ".", placements: dict[str, ProbePlacement] | None = None,
         placement_keys: dict[str, str] | None = None, source: str | None = None) -> Mesh:
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
    except AnatomyError as exc:
        raise InputError(str(exc), source=source, key="mesh.phantom.anatomy") from exc
    except InputError as exc:
        exc.source = exc.source or source
        raise


def case_placements(case: Case) -> tuple[dict[str, ProbePlacement], dict[str, str]]:
    """The case's probe placements by probe name, and the case key of each (``probes.N.placement``)."""
    placed = [(i, p) for i, p in enumerate(case.probes) if p.placement is not None]
    return {p.name: p.placement for _, p in placed}, {p.name: f"probes.{i}.placement" for i, p in placed}


def mesh_of(case: Case) -> Mesh:
    """The case's mesh: :func:`load` with the case's directory, file name and probe placements."""
    placements, keys = case_placements(case)
    return load(case.mesh, base_dir=case.base_dir, placements=placements, placement_keys=keys,
                source=case.source)
