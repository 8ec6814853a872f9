"""What every device model keeps: a time series of one row per accepted step, a few running figures for the
summary, and both in checkpoints (docs/physics.md §5).

A model that keeps records subclasses :class:`RecordingModel` instead of
:class:`~cryofield.model.boundaries.BoundaryModel`: it names its ``columns``, adds a row to ``self.series``
in :meth:`~cryofield.model.boundaries.BoundaryModel.update`, names the attributes a checkpoint keeps
(``kept``, ``kept_together``) and gives its figures in :meth:`RecordingModel.figures`; records, summary, state
and restore are written here once. Being a subclass that overrides ``records`` is also what makes a model a
device (:meth:`~cryofield.model.boundaries.BoundarySet.devices`): its records go to the result under
``/devices/NAME`` and its summary to the summary's ``devices``.

This module defines no model of its own, so it registers nothing.

Examples
--------
>>> series = Series(("time", "power_W"))
>>> series.add(0.5, 2.0)
>>> series.add(1.0, 3.0)
>>> series.arrays()["power_W"]
array([2., 3.])
>>> series.last_time(default=0.0)
1.0
>>> copy = Series(series.columns)
>>> copy.restore(series.state())
>>> copy.rows == series.rows
True
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cryofield.model.boundaries import BoundaryModel, Context, Params, Surface


class Series:
    """Rows of a time series, one per accepted step (and checkpointable).

    Parameters
    ----------
    columns
        The names of the columns, ``time`` first.
    """

    def __init__(self, columns: tuple[str, ...]):
        self.columns = columns
        self.rows: list[tuple[float, ...]] = []

    def add(self, *values: float) -> None:
        """Append a row, one value per column."""
        self.rows.append(tuple(float(v) for v in values))

    def last_time(self, default: float) -> float:
        """The time (first column) of the last row, or ``default`` before the first."""
        return self.rows[-1][0] if self.rows else default

    def arrays(self) -> dict[str, np.ndarray]:
        """Every column as an array, by name."""
        table = np.array(self.rows, float).reshape(len(self.rows), len(self.columns))
        return {name: table[:, i] for i, name in enumerate(self.columns)}

    def state(self) -> dict[str, np.ndarray]:
        """The rows as one (K, columns) array ``series``, for checkpoints."""
        return {"series": np.array(self.rows, float).reshape(len(self.rows), len(self.columns))}

    def restore(self, state: dict) -> None:
        """Take back the rows of :meth:`state` (none when ``state`` has no ``series``)."""
        self.rows = [tuple(row) for row in np.asarray(state.get("series", np.zeros((0, len(self.columns)))))]


class RecordingModel(BoundaryModel):
    """A boundary model that keeps records: a controller, a heater, a cryogen's heat drawn, a vessel's.

    A subclass sets ``kind``, ``role`` and ``Params`` as any model, and

    * ``columns``: its time series' columns (``time`` first, ``phase`` second); it adds a row to
      ``self.series`` after every accepted step;
    * ``kept``: the attributes a checkpoint keeps one by one (each a 0-d array under its own name); one that
      a checkpoint lacks starts again at 0, as a running total does;
    * ``kept_together``: the attributes a checkpoint keeps as one array ``scalars``, in this order (a
      controller's state); when a checkpoint lacks it they are left as they are;
    * :meth:`figures`: its figures of the run for the summary.

    The two layouts are those of the checkpoints written so far; a new model may use either.

    Parameters
    ----------
    params, surface, context
        As for :class:`~cryofield.model.boundaries.BoundaryModel`.
    """

    columns: ClassVar[tuple[str, ...]] = ("time", "phase")
    kept: ClassVar[tuple[str, ...]] = ()
    kept_together: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Params, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.series = Series(self.columns)

    def records(self) -> dict[str, np.ndarray]:
        """The time series, one array per column (``time`` first)."""
        return self.series.arrays()

    def figures(self) -> dict:
        """This model's figures of the run for the summary (after ``model`` and, on a surface, ``surface``)."""
        return {}

    def summary(self) -> dict:
        """``model`` (the kind), ``surface`` for a surface condition (a probe is already named by its probe),
        then :meth:`figures`."""
        head = {"model": self.kind} | ({"surface": self.surface.name} if self.role == "surface" else {})
        return head | self.figures()

    def state(self) -> dict[str, np.ndarray]:
        """The series, the ``kept`` attributes and the ``kept_together`` ones (as ``scalars``)."""
        out = self.series.state() | {name: np.array(getattr(self, name), float) for name in self.kept}
        if self.kept_together:
            out["scalars"] = np.array([getattr(self, name) for name in self.kept_together], float)
        return out

    def restore(self, state: dict[str, float | np.ndarray]) -> None:
        """Take back what :meth:`state` returned (or an older checkpoint's part of it)."""
        self.series.restore(state)
        for name in self.kept:
            setattr(self, name, float(state.get(name, 0.0)))
        if self.kept_together and "scalars" in state:
            values = np.asarray(state["scalars"], float)
            if values.shape != (len(self.kept_together),):  # checked before any is set: all or nothing
                raise ValueError(f"a {self.kind} model keeps {len(self.kept_together)} scalars, not {values.shape}")
            for name, value in zip(self.kept_together, values, strict=True):
                setattr(self, name, float(value))
