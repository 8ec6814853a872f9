"""A live progress bar on the terminal."""

from __future__ import annotations

from cryofield.model.schedule import Segment
from cryofield.run.driver import Observer, RunState


class ProgressBar(Observer):
    """A live tqdm bar: simulated time, wall time, ETA, the protocol phase and DOF-steps/s."""

    name = "progress"

    def start(self, run: RunState) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=run.timeline.end, unit="s", unit_scale=False, dynamic_ncols=True, desc="simulated",
                        bar_format="{desc}: {n:.1f}/{total:.1f} s |{bar}| wall {elapsed} ETA {remaining}{postfix}")

    def at_output(self, run: RunState, segment: Segment) -> None:
        self.bar.update(segment.end - self.bar.n)  # from the bar's own count: a resumed run starts part way
        stats, stepping = run.stepper.stats, max(run.timings["stepping_s"], 1e-9)
        rate = run.problem.n_nodes * stats.equivalent_applications / stepping
        phase = f"phase {run.phase.index + 1}/{len(run.timeline.phases)} {run.phase.kind}, " if run.phase else ""
        self.bar.set_postfix_str(f"{phase}{rate / 1e6:.1f} M DOF-steps/s", refresh=False)

    def finish(self, run: RunState) -> None:
        self.bar.close()
