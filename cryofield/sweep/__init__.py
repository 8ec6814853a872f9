"""Parameter sweeps and uncertainty: many variants of one case on a Dask cluster, one results table out.

``cryofield sweep SWEEP.yaml -o DIR`` expands a sweep file into variants of a base case, validates every
variant before any runs, runs them on a Dask cluster (a :class:`~distributed.LocalCluster` sized to the
machine by default) and writes one row per variant to ``DIR/results.parquet`` and ``DIR/results.csv`` as
variants finish. ``cryofield sweep-report DIR`` draws the outcomes against the axes and prints the
probabilities of the clinical outcomes with their confidence intervals.

The sweep file
--------------
A YAML mapping; unknown keys are refused, as in a case file. Relative paths are relative to the sweep
file; the base case's own relative paths (``mesh.file``) to the base case file when ``base`` names one,
else to the sweep file.

.. code-block:: yaml

    name: gon_gap                    # default: the file's stem
    base: gon_double_freeze.yaml     # the base case: a case file, or an inline case mapping
    design: grid                     # grid | zip | lhs | random
    samples: 16                      # lhs, random: how many variants
    seed: 0                          # lhs, random: the same seed draws the same variants
    axes:                            # what varies: dotted paths into the case
      - path: probes.0.placement.target.gap
        values: [0.2, 0.5, 1.0]      # grid, zip: these values; lhs, random: one of them, equally likely
      - path: [protocol.0.duration, protocol.2.duration]   # several keys that take the same value
        name: freeze_s               # the column in the table (default: the first path)
        range: {low: 60, high: 120, count: 3}              # grid, zip: evenly spaced values
      - path: tissues.gon.perfusion
        distribution: {kind: normal, mean: 2.0e-3, std: 5.0e-4, low: 0}   # lhs, random
    backend: cpu                     # every variant on this backend (default: each case's solver.backend)
    retries: 2                       # reruns of a variant whose worker died (killed, out of memory)
    target_nerve: gon                # the nerve the aggregate outcomes read (default: every nerve)
    confidence: 0.95                 # of the intervals on the probabilities
    interval: wilson                 # wilson | clopper-pearson
    cluster: {kind: local}           # local | slurm | local-cuda (keys below)

**Paths** address any key of the case by its dotted path: mapping keys by name, list items by their
index (``protocol.0.duration``, ``probes.0.placement.target.gap``, ``tissues.nerve.perfusion``,
``mesh.phantom.anatomy.skin_thickness``, ``boundaries.1.heat_transfer_coefficient``). A key the base case
leaves out but that has a default (``mesh.phantom.anatomy``, the phantom's tissues) can be varied too.
A path that names no key of the case is refused, naming the axis.

**Designs**: ``grid``, every combination of the axes' values (the first axis varies slowest); ``zip``,
the axes' value lists side by side (all of one length); ``lhs``, a Latin hypercube of ``samples`` points
(:class:`scipy.stats.qmc.LatinHypercube`); ``random``, ``samples`` independent draws
(:func:`numpy.random.default_rng`). A sampled axis has a ``distribution``, or ``values`` to choose from.

**Distributions** (``kind``): ``uniform`` (``low``, ``high``); ``normal`` (``mean``, ``std``);
``lognormal`` (``median``, ``sigma``: the standard deviation of the logarithm); ``truncated_normal``
(``mean``, ``std``, ``low``, ``high``). ``normal`` and ``lognormal`` are truncated to ``low`` and/or
``high`` when given. ``integer: true`` on an axis rounds its values.

**Clusters** (``cluster.kind``):

* ``local`` (default): ``workers`` (default: one per core), ``threads`` (solver threads per variant;
  default: the cores shared among the workers), ``memory_limit`` per worker (default ``auto``).
* ``slurm``: workers started as SLURM jobs through ``dask-jobqueue``: ``queue``, ``account``, ``cores``
  and ``memory`` per job, ``walltime``, ``processes`` (variants at once in a job, sharing its cores),
  ``jobs`` (how many jobs), ``job_extra_directives`` (extra ``#SBATCH`` lines, e.g. ``--gres=gpu:1``),
  ``job_script_prologue`` (shell lines before the worker starts), ``log_directory``,
  ``local_directory``, ``interface``, ``python``, ``job_name``. ``cryofield sweep --dry-run`` prints
  the job script.
* ``local-cuda``: one worker per GPU through ``dask-cuda``, so GPU variants never share a device:
  ``devices`` (default: every visible GPU), ``memory_limit``, ``threads``.

``--scheduler ADDRESS`` joins a running cluster instead (its workers should run one task at a time,
``--nthreads 1``).

Outputs
-------
``DIR/variants/HASH/``: each variant's case (``case.yaml``), result set and its row (``row.json``,
written last and atomically; a variant is finished when its row says ``ok``). ``HASH`` is the hash of the
variant's validated case (and backend), so rerunning the same command skips every finished variant and
reruns the others; a changed base case makes new variants. ``DIR/results.parquet``, ``DIR/results.csv``:
one row per variant (:mod:`.table`), pending ones included; ``DIR/summary.json``: counts and the outcome
probabilities (:mod:`.uncertainty`).
"""
