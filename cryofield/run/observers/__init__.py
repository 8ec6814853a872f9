"""The observers of a run (:class:`cryofield.run.driver.Observer`), one per module, each owning its output.

========================  ==========================================  =======================================
module                    observer (name)                             writes
========================  ==========================================  =======================================
:mod:`.dose`              :class:`~.dose.DoseTracker` (``dose``)      ``/fields`` min temperature, time below;
                                                                      summary ``regions`` (coldest, time below)
:mod:`.clinical`          :class:`~.clinical.ClinicalReadout`         ``/fields/damage_fraction``,
                          (``clinical``)                              ``/clinical``; summary ``clinical``
:mod:`.metrics`           :class:`~.metrics.MetricsRecorder`          ``/metrics``; summary
                          (``metrics``)                               ``total_volume_below_mm3``, ``regions``
                                                                      (frozen volumes), ``probes``
:mod:`.iceball`           :class:`~.iceball.IceBallRecorder`          ``/iceball``; summary ``iceball_mm``
                          (``iceball``)
:mod:`.snapshots`         :class:`~.snapshots.SnapshotWriter`         ``/snapshots`` (as the run goes)
                          (``snapshots``)
:mod:`.range_guard`       :class:`~.range_guard.RangeGuard`           nothing: stops a run that drifts out of
                          (``range_guard``)                           range (:class:`~.range_guard.OutOfRange`)
:mod:`.progress`          :class:`~.progress.ProgressBar`             a live bar on the terminal
                          (``progress``)
:mod:`.temperature`       :class:`~.temperature.TemperatureRecorder`  nothing: keeps fields for studies
                          (``temperatures``)
========================  ==========================================  =======================================

A new per-run quantity is a new module here and its test: an observer with its own :attr:`name
<cryofield.run.driver.Observer.name>`, its :meth:`~cryofield.run.driver.Observer.write` and
:meth:`~cryofield.run.driver.Observer.summary`, listed in :func:`cryofield.run.runner.observers_for`. The
names in the table are stable: a checkpoint keeps each observer's state under its name.
"""
