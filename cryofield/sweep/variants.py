"""Variants: the base case with each design point's values set at the axes' dotted paths, each validated.

A path is followed through the base case as written; where the base case leaves a key out, the validated
base case's value (its default) is copied in first, so ``mesh.phantom.anatomy.skin_thickness`` works on a
case that never mentions ``anatomy``. Every variant goes through :func:`~cryofield.config.case.parse_case`
before anything runs.

Examples
--------
>>> base = {"protocol": [{"kind": "freeze", "duration": 60}], "mesh": {"phantom": {"preset": "coarse"}}}
>>> defaults = {"protocol": [{"kind": "freeze", "duration": 60.0, "temperature": None}],
...             "mesh": {"phantom": {"preset": "coarse", "anatomy": {"skin_thickness": 2.0}}}}
>>> v = with_values(base, defaults, {"protocol.0.temperature": -40, "mesh.phantom.anatomy.skin_thickness": 1.5})
>>> v["protocol"][0], v["mesh"]["phantom"]["anatomy"]
({'kind': 'freeze', 'duration': 60, 'temperature': -40}, {'skin_thickness': 1.5})
>>> with_values(base, defaults, {"protocol.0.temprature": -40})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
cryofield.sweep.variants.PathError: 'protocol.0.temprature': no key 'temprature' in protocol.0 (it has: kind, ...)
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from cryofield.config.case import Case, parse_case
from cryofield.errors import InputError
from cryofield.sweep.design import design_points
from cryofield.sweep.schema import Sweep

#: How many invalid variants an error lists (the count says how many there are in all).
MAX_LISTED = 5


class PathError(ValueError):
    """A dotted path that names no key of the case."""


@dataclass
class Variant:
    """One case of the sweep: its index, axis values, case mapping and validated case, and its hash."""

    index: int
    params: dict[str, Any]  # axis column -> value
    mapping: dict[str, Any]  # the case as a YAML mapping: the base case with the values set
    case: Case
    key: str  # hash of the validated case and the backend: the name of its directory

    def case_yaml(self) -> str:
        return yaml.safe_dump(self.mapping, sort_keys=False)


def expand(sweep: Sweep) -> list[Variant]:
    """Every variant of ``sweep``, validated.

    Raises
    ------
    InputError
        For a base case that is not valid, an axis path that names no key of the case (key ``axes.N.path``)
        or variants that are not valid cases (key ``axes.N`` of the axis whose key is refused, the message
        listing the variants by index with their values and the case key).
    """
    spec = sweep.spec
    try:
        base_case = parse_case(yaml.safe_dump(sweep.base, sort_keys=False), source=sweep.base_source,
                               base_dir=sweep.base_dir)
    except InputError as exc:
        raise InputError(f"the base case is not valid: {exc}", source=sweep.source, key="base") from None
    defaults = base_case.model_dump(mode="json", by_alias=True)
    base = dict(sweep.base, name=base_case.name)  # the name the base case gets (from its file), for every variant
    try:
        points = design_points(spec)
    except ValueError as exc:
        raise InputError(str(exc), source=sweep.source, key="axes") from None
    for j, axis in enumerate(spec.axes):  # every path must name a key, whatever the value
        for path in axis.paths:
            try:
                with_values(base, defaults, {path: None})
            except PathError as exc:
                raise InputError(f"axis '{axis.column}': {exc}", source=sweep.source, key=f"axes.{j}.path") from None
    variants, bad = [], []
    for i, point in enumerate(points):
        values = {path: point[axis.column] for axis in spec.axes for path in axis.paths}
        mapping = with_values(base, defaults, values)
        try:
            case = parse_case(yaml.safe_dump(mapping, sort_keys=False), source=sweep.base_source,
                              base_dir=sweep.base_dir)
        except InputError as exc:
            bad.append((i, point, exc))
            continue
        variants.append(Variant(i, point, mapping, case, variant_key(case, spec.backend)))
    if bad:
        raise _invalid(sweep, bad, len(points))
    return variants


def _invalid(sweep: Sweep, bad: list[tuple[int, dict, InputError]], total: int) -> InputError:
    """One error for the invalid variants, under the key of the axis the first one's problem is at."""
    spec = sweep.spec
    first_key = bad[0][2].key or ""
    where = next((f"axes.{j}" for j, axis in enumerate(spec.axes) for path in axis.paths
                  if first_key == path or first_key.startswith(path + ".") or path.startswith(first_key + ".")),
                 "axes")
    lines = []
    for i, point, exc in bad[:MAX_LISTED]:
        values = ", ".join(f"{k}={v!r}" for k, v in point.items())
        lines.append(f"variant {i} ({values}): {exc.key or '(case)'}: {exc.message}")
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    axis = f"axis '{spec.axes[int(where.split('.')[1])].column}': " if where != "axes" else ""
    return InputError(f"{axis}{len(bad)} of {total} variant(s) are not valid cases; nothing was run: "
                      + "; ".join(lines) + more, source=sweep.source, key=where)


def variant_key(case: Case, backend: str | None) -> str:
    """16 hex digits of the hash of the validated case (defaults filled in) and the backend.

    The same case always gets the same key, whatever the sweep it is part of, and any change to the case
    (an axis value, the base case, a default) gets a new one.
    """
    payload = json.dumps({"case": case.model_dump(mode="json", by_alias=True), "backend": backend},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


_MISSING = object()


def with_values(base: dict, defaults: dict, values: dict[str, Any]) -> dict:
    """A deep copy of ``base`` with each dotted path of ``values`` set (see the module doc).

    Raises
    ------
    PathError
        For a path that names no key of the case (neither in ``base`` nor in ``defaults``).
    """
    out = copy.deepcopy(base)
    for path, value in values.items():
        _set(out, defaults, path, value)
    return out


def _set(root: dict, defaults: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    node, dnode = root, defaults
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the case"
        if isinstance(node, list):
            if not part.isdigit():
                raise PathError(f"{path!r}: {here} is a list: use an index (0 to {len(node) - 1}), not {part!r}")
            key: Any = int(part)
            if key >= len(node):
                raise PathError(f"{path!r}: {here} has {len(node)} item(s): no index {key}")
            present = True
        elif isinstance(node, dict):
            key, present = part, part in node
        else:
            raise PathError(f"{path!r}: {here} is a value ({node!r}), not a section with keys")
        dchild = _child(dnode, key)
        if not present and dchild is _MISSING:
            has = ", ".join(map(str, node)) if isinstance(node, dict) else ""
            if isinstance(dnode, dict):
                has = ", ".join(dict.fromkeys([*map(str, node), *map(str, dnode)]))
            raise PathError(f"{path!r}: no key {part!r} in {here}" + (f" (it has: {has})" if has else ""))
        if depth == len(parts) - 1:
            node[key] = value
            return
        if not present or node[key] is None and isinstance(dchild, (dict, list)):
            node[key] = copy.deepcopy(dchild)
        node, dnode = node[key], dchild


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return _MISSING
