"""The nodal fields at every snapshot time, written to ``/snapshots`` as the run goes."""

from __future__ import annotations

from cryofield.io.results import ResultWriter
from cryofield.model.schedule import Segment
from cryofield.run.driver import Observer, RunState


class SnapshotWriter(Observer):
    """Writes the requested nodal fields to the result at every snapshot time.

    The snapshots go to the file as they are taken (a run can be far larger than memory); the index of
    their times and phases is the writer's own, written when it finishes
    (:meth:`cryofield.io.results.ResultWriter.finish`), so :meth:`write` has nothing left to do.
    """

    name = "snapshots"

    def __init__(self, writer: ResultWriter, fields: list[str]):
        self.writer, self.fields = writer, fields

    def at_output(self, run: RunState, segment: Segment) -> None:
        if not segment.snapshot:
            return
        T = run.temperature()
        fields = {"temperature": T}
        if "liquid_fraction" in self.fields:
            fields["liquid_fraction"] = run.problem.liquid_fraction(T)
        if "enthalpy" in self.fields:
            fields["enthalpy"] = run.stepper.enthalpy_host()
        self.writer.write_snapshot(segment.end, segment.phase, fields)

    def state(self, run: RunState) -> dict:
        """Every snapshot written so far (read back from the result being written)."""
        return self.writer.snapshots_so_far()

    def restore(self, run: RunState, state: dict) -> None:
        for i, (t, phase) in enumerate(zip(state["time"], state["phase"])):
            fields = {name[len("field_"):]: values[i] for name, values in state.items() if name.startswith("field_")}
            self.writer.write_snapshot(float(t), int(phase), fields)
