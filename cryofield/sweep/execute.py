"""Running a sweep on a Dask cluster: the cluster, the submission loop, retries, resumption, the table.

:func:`run_sweep` expands and validates every variant (nothing runs if one is invalid), skips those whose
directory already holds an ``ok`` row, starts (or joins) a cluster only if something is left, and submits
the rest with :meth:`distributed.Client.submit`, keeping no more variants in flight than the cluster has
worker threads, so that each worker holds one variant at a time and a worker's death touches only the
variant it was running. That variant is submitted again (up to ``retries`` times; the clusters this module
starts give up on a task at the first death of its worker, ``distributed.scheduler.allowed-failures: 0``,
so the count here is the only one). The table and ``summary.json`` are rewritten after every variant;
Ctrl-C cancels what is in flight and leaves every finished variant, and the table, intact.

A script of your own that calls :func:`run_sweep` with the default local cluster must do so under
``if __name__ == "__main__":``: the workers are spawned processes that import the script.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cryofield.errors import InputError
from cryofield.sweep.schema import SAMPLED_DESIGNS, LocalClusterSpec, LocalCudaClusterSpec, SlurmClusterSpec, Sweep
from cryofield.sweep.table import write_table
from cryofield.sweep.uncertainty import distribution, format_distribution, format_probabilities, probabilities
from cryofield.sweep.variants import Variant, expand
from cryofield.sweep.worker import ROW_FILE, read_row, run_variants, write_row

SUMMARY = "summary.json"
VARIANTS = "variants"
#: How often (s) the loop looks at the cluster when nothing finishes (new workers, the progress bar).
POLL_S = 1.0
#: Failed variants listed at the end of ``cryofield sweep`` (the table has them all).
MAX_LISTED_FAILURES = 20


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the table's rows, the counts, where the files are."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    paths: dict[str, Path]
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every variant finished ``ok``."""
        return not self.interrupted and all(r["status"] == "ok" for r in self.rows)


def run_sweep(sweep: Sweep, out_dir: str | Path, *, scheduler: str | None = None, client=None,
              workers: int | None = None, progress: bool = True, dry_run: bool = False) -> SweepResult:
    """Run every unfinished variant of ``sweep`` into ``out_dir`` (see the module doc).

    Parameters
    ----------
    scheduler
        Address of a running Dask scheduler to join instead of starting the sweep's cluster.
    client
        A :class:`distributed.Client` to use as it is (its cluster is not closed).
    workers
        Workers of a local cluster (overrides ``cluster.workers``).
    dry_run
        Validate and write the variants' cases, run nothing (a SLURM cluster's job script is in the notes).

    Raises
    ------
    InputError
        For a variant that is not a valid case, an unusable output directory or cluster configuration;
        before anything runs.
    """
    from cryofield.run.output import check_output_dir

    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    check_output_dir(out_dir)
    spec = sweep.spec
    variants = expand(sweep)
    (out_dir / VARIANTS).mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "sweep.yaml", sweep.text)
    previous = _read_summary(out_dir)
    run_no = int(previous.get("runs", 0)) + 1
    tasks: dict[str, dict] = {}  # by variant key: one run for variants that are the same case
    done: dict[str, dict] = {}  # by variant key: the rows of finished variants
    for v in variants:
        vdir = out_dir / VARIANTS / v.key
        if v.key in tasks or v.key in done:
            continue
        row = read_row(vdir)
        if row is not None and row.get("status") == "ok":
            done[v.key] = row
            continue
        vdir.mkdir(exist_ok=True)
        text = _variant_case_yaml(v, sweep)
        _write_text(vdir / "case.yaml", text)
        tasks[v.key] = {"index": v.index, "key": v.key, "dir": str(vdir), "case_yaml": text,
                        "source": str(vdir / "case.yaml"), "base_dir": str(Path(sweep.base_dir).resolve()),
                        "backend": spec.backend, "threads": None, "target_nerve": spec.target_nerve, "run": run_no}
    skipped = len(done)
    state = _State(sweep, variants, out_dir, done, run_no, skipped, previous)
    state.write()
    notes: list[str] = []
    if dry_run or not tasks:
        if dry_run and isinstance(spec.cluster, SlurmClusterSpec) and scheduler is None and client is None:
            with slurm_cluster(spec.cluster, sweep.source) as cluster:
                notes.append("SLURM job script:\n" + cluster.job_script())
        return state.result(time.perf_counter() - t0, notes=notes)
    with _client(spec, scheduler, client, workers, sweep.source) as (dask_client, threads, where):
        notes.append(f"cluster: {where}")
        for task in tasks.values():
            task["threads"] = threads
        slots = max(1, sum(dask_client.nthreads().values()))
        jobs = ensemble_jobs(sweep, variants, list(tasks.values()), slots)
        if any(len(job) > 1 for job in jobs):
            notes.append(f"ensembles: {len(tasks)} variant(s) in {len(jobs)} job(s) of at most "
                         f"{max(len(j) for j in jobs)} (variants that share a mesh step together)")
        interrupted = _drive(dask_client, jobs, state, spec.retries, progress)
    return state.result(time.perf_counter() - t0, interrupted=interrupted, notes=notes)


def ensemble_jobs(sweep: Sweep, variants: list[Variant], tasks: list[dict], slots: int) -> list[list[dict]]:
    """The tasks in jobs: the variants that agree on every axis that may change the mesh
    (:attr:`~cryofield.sweep.schema.Axis.may_change_mesh`) form a group, cut into ensembles of at most
    ``ensemble_size``, and into at least ``slots`` (the cluster's worker threads) where the group is big
    enough, so that every worker has work. A variant that turns out not to share the mesh runs on its own
    (:func:`~cryofield.sweep.worker.run_variants`)."""
    spec = sweep.spec
    mesh_columns = [a.column for a in spec.axes if a.may_change_mesh]
    params = {v.key: v.params for v in variants}
    groups: dict[str, list[dict]] = {}
    for task in tasks:
        key = repr([params[task["key"]].get(c) for c in mesh_columns])
        groups.setdefault(key, []).append(task)
    jobs = []
    for group in groups.values():
        size = max(1, min(spec.ensemble_size, -(-len(group) // slots)))
        jobs += [group[i:i + size] for i in range(0, len(group), size)]
    return jobs


class _State:
    """The rows as they finish, written to the table and the summary after each."""

    def __init__(self, sweep: Sweep, variants: list[Variant], out_dir: Path, done: dict[str, dict], run_no: int,
                 skipped: int, previous: dict):
        self.sweep, self.variants, self.out_dir, self.done = sweep, variants, out_dir, done
        self.run_no, self.skipped, self.ran = run_no, skipped, 0
        self.running: set[str] = set()
        self.started = previous.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.paths: dict[str, Path] = {}

    def finish(self, row: dict) -> None:
        row = {"run": self.run_no} | dict(row)
        self.done[row["key"]] = row
        self.running.discard(row["key"])
        self.ran += 1
        self.write()

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for v in self.variants:
            row = self.done.get(v.key)
            status = row["status"] if row else ("running" if v.key in self.running else "pending")
            extra = {k: val for k, val in (row or {}).items() if k not in ("key", "status", "run")}
            out.append({"variant": v.index, "key": v.key, **v.params, "status": status,
                        "run": (row or {}).get("run"), **extra})
        return out

    def counts(self) -> dict[str, int]:
        rows = self.rows()
        return {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "running", "pending")}

    def write(self, wall_s: float | None = None, interrupted: bool = False) -> dict:
        spec = self.sweep.spec
        rows = self.rows()
        first = ["variant", "key", *(a.column for a in spec.axes), "status", "run", "error", "error_key",
                 "attempts", "wall_s", "solver_s", "backend"]
        self.paths = write_table(self.out_dir, rows, first)
        threshold = next((r["durable_block_mm"] for r in rows if r.get("durable_block_mm") is not None), None)
        summary = {
            "sweep": spec.name, "source": self.sweep.source, "design": spec.design,
            "axes": [{"column": a.column, "paths": a.paths} for a in spec.axes],
            "variants": len(rows), "distinct_cases": len({v.key for v in self.variants}),
            "counts": self.counts(), "runs": self.run_no, "skipped": self.skipped, "ran": self.ran,
            "wall_s": None if wall_s is None else round(wall_s, 3), "interrupted": interrupted,
            "started_at": self.started, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "target_nerve": spec.target_nerve, "durable_block_mm": threshold,
            "probabilities": probabilities(rows, spec.confidence, spec.interval),
            "injured_fraction": distribution(rows, "injured_fraction")}
        _write_text(self.out_dir / SUMMARY, json.dumps(summary, indent=2))
        self.paths["summary"] = self.out_dir / SUMMARY
        return summary

    def result(self, wall_s: float, interrupted: bool = False, notes: list[str] | None = None) -> SweepResult:
        summary = self.write(wall_s, interrupted)
        return SweepResult(self.rows(), summary, dict(self.paths), interrupted, list(notes or []))


def _drive(client, jobs: list[list[dict]], state: _State, retries: int, progress: bool) -> bool:
    """Submit ``jobs`` (lists of tasks, run as one ensemble each), at most one per worker thread at a time, until
    every task has a row; True if interrupted."""
    from distributed import wait
    from distributed.client import FutureCancelledError, FuturesCancelledError
    from distributed.scheduler import KilledWorker
    from tqdm.auto import tqdm

    todo = deque(jobs)
    in_flight: dict = {}  # future -> job
    deaths: dict[str, int] = {}  # by the job's first variant
    total = len(state.variants)
    bar = tqdm(total=total, initial=total - sum(len(j) for j in jobs), unit="variant", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, desc=state.sweep.spec.name)

    def show(refresh: bool = True) -> None:
        c = state.counts()
        bar.set_postfix_str(f"ok {c['ok']}, failed {c['failed']}, running {len(state.running)}", refresh=refresh)

    def submit(job: list[dict]) -> None:
        n = deaths.get(job[0]["key"], 0)
        key = f"cryofield-variant-{job[0]['key']}-{len(job)}-{state.run_no}-{n}"
        future = client.submit(run_variants, job, key=key, pure=False, retries=retries)
        in_flight[future] = job
        state.running.update(task["key"] for task in job)

    def failed(task: dict, message: str) -> dict:
        row = {"key": task["key"], "run": state.run_no, "status": "failed", "error": message, "error_key": None,
               "attempts": deaths.get(task["key"], 0) + 1, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_row(Path(task["dir"]), row)
        return row

    stop = _CtrlC()
    try:
        show()
        while todo or in_flight:
            if stop.pressed:
                raise KeyboardInterrupt
            limit = max(1, sum(client.nthreads().values()))
            while todo and len(in_flight) < limit:
                submit(todo.popleft())
            try:
                finished, _ = wait(list(in_flight), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                show()
                continue
            except FuturesCancelledError:  # the cluster went away under us (closed, or lost its scheduler)
                state.running.clear()
                return True
            for future in finished:
                job = in_flight.pop(future)
                if future.status == "finished":
                    for row in future.result():
                        state.finish(row)
                else:
                    try:
                        exc = future.exception()
                    except FutureCancelledError as cancelled:
                        exc = cancelled
                    first = job[0]["key"]
                    if isinstance(exc, KilledWorker) and deaths.get(first, 0) < retries:
                        deaths[first] = deaths.get(first, 0) + 1
                        state.running.difference_update(task["key"] for task in job)
                        todo.appendleft(job)  # again, on whichever worker is free next
                        continue
                    if isinstance(exc, KilledWorker):
                        message = (f"its worker died {deaths.get(first, 0) + 1} time(s) while running it "
                                   "(killed, or out of memory)")
                    else:
                        message = f"{type(exc).__name__}: {exc}"
                    for task in job:
                        state.finish(failed(task, message))
                show(refresh=False)
                bar.update(len(job))
    except KeyboardInterrupt:
        client.cancel(list(in_flight))
        state.running.clear()
        return True
    finally:
        stop.restore()
        bar.close()
    return False


class _CtrlC:
    """While the loop runs, Ctrl-C sets a flag that the loop reads within :data:`POLL_S` (an interrupt raised
    asynchronously can be lost, e.g. inside a garbage-collector callback); a second Ctrl-C raises at once."""

    def __init__(self):
        import signal
        import threading

        self.pressed = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        print("\nstopping: cancelling the running variants (Ctrl-C again to stop at once)", file=sys.stderr)

    def restore(self) -> None:
        if self._previous is not None:
            import signal

            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@contextmanager
def _client(spec, scheduler: str | None, client, workers: int | None, source: str) -> Iterator[tuple[Any, Any, str]]:
    """``(client, solver threads per variant or None, description)`` for the sweep's cluster."""
    if client is not None:
        yield client, shared_threads(client), f"the given client ({client.scheduler.address})"
        return
    from distributed import Client

    if scheduler is not None:
        try:
            c = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", key="--scheduler") from None
        with c:
            yield c, shared_threads(c), f"scheduler {scheduler}"
        return
    cluster_spec = spec.cluster
    if workers is not None and not isinstance(cluster_spec, LocalClusterSpec):
        raise InputError("--workers sizes a local cluster; this sweep's cluster is "
                         f"'{cluster_spec.kind}'", source=source, key="--workers")
    if isinstance(cluster_spec, SlurmClusterSpec):
        with slurm_cluster(cluster_spec, source) as cluster:
            cluster.scale(jobs=cluster_spec.jobs)
            with Client(cluster) as c:
                yield c, cluster_spec.cores // cluster_spec.processes, (
                    f"SLURM, {cluster_spec.jobs} job(s) of {cluster_spec.processes} worker(s) "
                    f"and {cluster_spec.cores} core(s)")
        return
    if isinstance(cluster_spec, LocalCudaClusterSpec):
        with local_cuda_cluster(cluster_spec, source) as cluster:
            n = len(cluster.workers)
            with Client(cluster) as c:
                c.register_plugin(IgnoreInterrupt(), name="cryofield-ignore-sigint")
                yield c, cluster_spec.threads or max(1, usable_cores() // n), f"{n} GPU worker(s) (dask-cuda)"
        return
    with local_cluster(cluster_spec, workers) as (cluster, threads):
        with Client(cluster) as c:
            c.register_plugin(IgnoreInterrupt(), name="cryofield-ignore-sigint")
            yield c, threads, f"local, {len(cluster.workers)} worker process(es), {threads} solver thread(s) each"


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def shared_threads(client) -> int:
    """Solver threads per variant on a cluster this module did not start: on each host, its cores shared
    among the worker threads there (each may run a variant), the fewest over the hosts; at least 1."""
    cores = client.run(usable_cores)  # by worker address
    workers = client.scheduler_info(n_workers=-1)["workers"]
    threads_on: dict[str, int] = {}
    cores_on: dict[str, int] = {}
    for address, info in workers.items():
        host = info.get("host", address)
        threads_on[host] = threads_on.get(host, 0) + int(info.get("nthreads", 1))
        cores_on[host] = cores.get(address, 1)
    return min((max(1, cores_on[h] // threads_on[h]) for h in threads_on), default=1)


def _ours() -> dict:
    """Configuration of the schedulers this module starts: the first death of a worker fails its task (the
    loop here retries it), worker logs only on errors."""
    return {"distributed.scheduler.allowed-failures": 0}


@contextmanager
def local_cluster(spec: LocalClusterSpec, workers: int | None = None):
    """A :class:`distributed.LocalCluster` of single-threaded worker processes; yields it and the solver
    threads each variant gets."""
    import dask
    from distributed import LocalCluster

    cores = usable_cores()
    n = workers or spec.workers or cores
    threads = spec.threads or max(1, cores // n)
    with dask.config.set(_ours()):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=spec.memory_limit,
                               dashboard_address=None, silence_logs=logging.ERROR)
    with cluster:
        yield cluster, threads


@contextmanager
def local_cuda_cluster(spec: LocalCudaClusterSpec, source: str = "<sweep>"):
    """``dask_cuda.LocalCUDACluster``: one single-threaded worker per GPU (``CUDA_VISIBLE_DEVICES`` set per
    worker), so no two variants share a device."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise InputError("cluster kind 'local-cuda' needs the dask-cuda package, which is not installed here: "
                         "pip install dask-cuda (on a machine with NVIDIA GPUs and their CUDA driver), or use "
                         "kind: local", source=source, key="cluster.kind") from None
    import dask

    kwargs: dict[str, Any] = {"threads_per_worker": 1, "memory_limit": spec.memory_limit,
                              "dashboard_address": None, "silence_logs": logging.ERROR}
    if spec.devices is not None:
        kwargs["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, spec.devices))
    with dask.config.set(_ours()):
        cluster = LocalCUDACluster(**kwargs)
    with cluster:
        yield cluster


def slurm_kwargs(spec: SlurmClusterSpec) -> dict[str, Any]:
    """The keyword arguments of ``dask_jobqueue.SLURMCluster`` for ``spec``.

    Each job asks SLURM for ``cores`` CPUs (``job_cpu``) and runs ``processes`` single-threaded workers
    (dask ``cores = processes``), one variant each, with ``cores // processes`` solver threads.
    """
    kwargs = {"queue": spec.queue, "account": spec.account, "cores": spec.processes, "processes": spec.processes,
              "job_cpu": spec.cores, "memory": spec.memory, "walltime": spec.walltime,
              "job_extra_directives": list(spec.job_extra_directives),
              "job_script_prologue": list(spec.job_script_prologue), "job_name": spec.job_name,
              "log_directory": spec.log_directory, "local_directory": spec.local_directory,
              "interface": spec.interface, "python": spec.python,
              "scheduler_options": {"dashboard_address": None}}
    return {k: v for k, v in kwargs.items() if v is not None}


@contextmanager
def slurm_cluster(spec: SlurmClusterSpec, source: str = "<sweep>"):
    """A ``dask_jobqueue.SLURMCluster`` (no job submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError("cluster kind 'slurm' needs the dask-jobqueue package: pip install 'cryofield[sweep]'",
                         source=source, key="cluster.kind") from None
    import dask

    with dask.config.set(_ours()):
        try:
            cluster = SLURMCluster(**slurm_kwargs(spec))
        except ValueError as exc:  # e.g. an interface the machine does not have
            raise InputError(f"SLURM cluster: {exc}", source=source, key="cluster") from None
    with cluster:
        yield cluster


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # the sweep extra is not installed: nothing here can run anyway
    _WorkerPlugin = object


class IgnoreInterrupt(_WorkerPlugin):
    """Worker processes of a local cluster ignore Ctrl-C: the client stops them (and cancels their work)."""

    def setup(self, worker) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _variant_case_yaml(v: Variant, sweep: Sweep) -> str:
    """The variant as a case file that runs on its own (``cryofield run``): its mesh file's path made absolute."""
    mapping = dict(v.mapping)
    mesh = dict(mapping.get("mesh") or {})
    if mesh.get("file"):
        path = Path(mesh["file"]).expanduser()
        mesh["file"] = str(path if path.is_absolute() else (Path(sweep.base_dir) / path).resolve())
        mapping["mesh"] = mesh
    values = ", ".join(f"{k}={val!r}" for k, val in v.params.items())
    head = f"# variant {v.index} of the sweep {sweep.source} ({values})\n"
    return head + yaml.safe_dump(mapping, sort_keys=False)


def _read_summary(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def print_result(result: SweepResult) -> None:
    """The end of ``cryofield sweep``: counts, where the table is, the probabilities of the outcomes."""
    s = result.summary
    c = s["counts"]
    print(f"{s['sweep']}: {s['variants']} variant(s): {c['ok']} ok, {c['failed']} failed, "
          f"{c['pending'] + c['running']} not run; {s['ran']} run now, {s['skipped']} already finished"
          + (f", {s['wall_s']:.1f} s" if s.get("wall_s") is not None else ""))
    for note in result.notes + sorted({r["ensemble_note"] for r in result.rows if r.get("ensemble_note")}):
        print(note)
    failed = [row for row in result.rows if row["status"] == "failed"]
    for row in failed[:MAX_LISTED_FAILURES]:
        key = f" [{row['error_key']}]" if row.get("error_key") else ""
        print(f"  variant {row['variant']} failed{key}: {row['error']}")
    if len(failed) > MAX_LISTED_FAILURES:
        print(f"  ... and {len(failed) - MAX_LISTED_FAILURES} more failed variant(s): see the table's error column")
    if s["design"] in SAMPLED_DESIGNS and s["probabilities"]:
        print("probabilities over the finished variants:")
        for line in format_probabilities(s["probabilities"]) + format_distribution(s.get("injured_fraction")):
            print(f"  {line}")
    for kind, path in result.paths.items():
        print(f"{kind}: {path}")
    if result.interrupted:
        print("interrupted: the finished variants are kept; run the same command again to continue",
              file=sys.stderr)


__all__ = ["ROW_FILE", "SweepResult", "run_sweep", "print_result", "slurm_kwargs", "slurm_cluster",
           "local_cluster", "local_cuda_cluster", "usable_cores"]
