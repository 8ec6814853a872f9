"""Case builders shared by the performance and peer suites."""

from __future__ import annotations

from pathlib import Path

from cryofield.config.case import Case, parse_case

from .geometry import probe_block, write_case_mesh

PROBE_BLOCK_CASE = """
name: probe_block
description: An 18G cryoprobe 10 mm deep in fat over muscle, 3 mm from a nerve; double freeze-thaw.
mesh: {{file: {mesh}, units: mm}}
tissues:
  fat: {{library: fat}}
  muscle: {{library: muscle}}
  nerve: {{library: nerve}}
probes: [{{name: probe, surface: probe_active}}]
protocol:
  - {{kind: freeze, duration: {freeze}, temperature: -70}}
  - {{kind: passive_thaw, duration: {thaw}}}
  - {{kind: freeze, duration: {freeze}, temperature: -70}}
initial: {{type: basal}}
boundaries:
  - {{surface: far, type: fixed, temperature: 37}}
  - {{surface: skin, type: convection, heat_transfer_coefficient: 8, temperature: 22}}
outputs: {{snapshot_interval: {snapshot}, metrics_interval: 1}}
solver: {{max_dt: {max_dt}, max_change: {max_change}}}
"""


def probe_block_case(directory: Path, size_tip: float, size_far: float, freeze: float, thaw: float,
                     max_dt: float = 2.0, max_change: float = 10.0) -> Case:
    """The probe-in-a-block case (:func:`benchmarks.geometry.probe_block`), its mesh written into ``directory``.

    Protocol: freeze ``freeze`` s at -70 °C, passive thaw ``thaw`` s, freeze again; basal start; the far
    faces at 37 °C and the skin to room air. Snapshots at the end of every phase.
    """
    mesh = probe_block(size_tip, size_far)
    path = write_case_mesh(mesh, Path(directory), f"probe_block_{size_tip:g}_{size_far:g}")
    return parse_case(PROBE_BLOCK_CASE.format(mesh=path, freeze=freeze, thaw=thaw, snapshot=freeze + thaw + freeze,
                                              max_dt=max_dt, max_change=max_change),
                      source=str(path.with_suffix(".yaml")),
                      base_dir=directory)
