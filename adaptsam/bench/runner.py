"""Run a whole bench: own the output folder, register cells, skip finished ones, run the rest, time every
inference graph together, report.

The bench owns its store: :class:`~adaptsam.bench.store.BenchLock` keeps a second bench off the same folder;
Ctrl-C and SIGTERM stop the running cell's worker, put that cell back to pending, write the report of what
is done, and end the bench (a later run resumes); ``kill -9`` loses nothing either (whole-row transactions,
cells identified by config hash). One cell is run by :mod:`adaptsam.bench.cell`; the executors decide where.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptsam.bench.executors import LocalExecutor, in_process_parts
from adaptsam.bench.spec import BenchSpec, Cell
from adaptsam.bench.store import STORE_NAME, BenchLock, ResultStore
from adaptsam.bench.timing import CellToTime, TimingConfig, run_timing
from adaptsam.bench.worker import run_isolated
from adaptsam.errors import Terminated

__all__ = ["STORE_NAME", "BenchSummary", "Terminated", "run_bench", "run_timing_phase"]


@dataclass
class BenchSummary:
    out: Path
    total: int
    ran: int
    statuses: dict[str, int] = field(default_factory=dict)
    report: Path | None = None
    timed: int = 0  # cells given a speed by this run's timing phase


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (main thread only; elsewhere it is left alone)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_bench(spec: BenchSpec, out: str | os.PathLike[str], *, executor: Any = None, retry_failed: bool = False,
              progress: bool = True, report: bool = True, on_result: Any = None, timing: bool = True,
              retime: bool = False) -> BenchSummary:
    """Run every cell of ``spec`` not already done in ``out``'s store, time them, then write the report.

    The timing phase runs when a cell ran, when no complete timing run covers every done cell, or with
    ``retime`` (e.g. on a quieter machine, or to see how much a busy one moves the ratios): a new timing run,
    which the report then reads; earlier runs stay in the store.
    """
    out = Path(out)
    cells = spec.cells()
    with BenchLock(out), ResultStore(out / STORE_NAME) as store, _sigterm_raises():
        store.register(cells)
        store.set_grid(c.key for c in cells)
        store.set_meta("spec", spec.to_dict())
        store.reset(["running", "pending"])  # cells a killed run left half-way start over
        if retry_failed:
            store.reset(["failed"])
        statuses = store.statuses()
        todo = [c for c in cells if statuses[c.key] == "pending"]
        timed = 0
        try:
            executor = executor or LocalExecutor()
            for name in ("device", "precision", "jobs"):  # how cells run: the spec's, unless the executor was told
                if getattr(executor, name, "") is None:
                    setattr(executor, name, getattr(spec, name))
            executor.run(todo, store, out, progress=progress, on_result=on_result)
            if timing:
                config = TimingConfig(rounds=spec.timing_rounds, compile=spec.compile, threads=spec.timing_threads)
                timed = run_timing_phase(store, config, progress=progress, force=bool(todo) or retime)
        except (KeyboardInterrupt, Terminated):
            store.reset(["running"])  # the interrupted cell runs again on resume
            if report:
                _write_report(out)
            raise
        final = store.statuses()
    counts: dict[str, int] = {}
    for cell in cells:
        counts[final[cell.key]] = counts.get(final[cell.key], 0) + 1
    summary = BenchSummary(out=out, total=len(cells), ran=len(todo), statuses=counts, timed=timed)
    if report:
        summary.report = _write_report(out)
    return summary


def _write_report(out: Path) -> Path:
    from adaptsam.bench.report import write_report

    return write_report(out)


def cells_to_time(store: ResultStore) -> list[CellToTime]:
    """Every done cell of the store with an adapter file to rebuild its deployed copy from."""
    from adaptsam.devices import resolve_device, resolve_precision

    spec = store.meta("spec") or {}
    out = []
    for row in store.grid_rows():
        path = row.metrics.get("adapter_file")
        if row.status != "done" or not path or not Path(path).is_file():
            continue
        cell = row.cell
        # timed where the bench runs now (the spec's device), else where the cell ran
        device = str(resolve_device(spec.get("device") or row.metrics.get("device") or "auto"))
        precision = resolve_precision(spec.get("precision", "auto"), device)
        out.append(CellToTime(key=row.key, label=row.label, backbone=cell.backbone, adapter=cell.adapter,
                              policy=cell.policy, resolution=cell.resolution, batch=cell.throughput_batch,
                              adapter_file=str(path), device=device, precision=precision))
    return out


def run_timing_phase(store: ResultStore, config: TimingConfig, *, progress: bool = True, force: bool = False) -> int:
    """Time every done cell's graph in one run (a worker process of its own), unless the latest complete
    timing run already covers every done cell and nothing new ran. Returns how many cells got a speed."""
    from adaptsam.bench.measure import environment

    cells = cells_to_time(store)
    if not cells:
        return 0
    latest = store.latest_timing_run()
    if not force and latest is not None and {c.key for c in cells} <= set(store.speeds(latest["run_id"])) \
            and latest["config"].get("compile", False) == config.compile \
            and latest["config"].get("threads", 0) == config.threads:
        return 0
    timed_on = {"device": sorted({c.device for c in cells}), "precision": sorted({c.precision for c in cells})}
    run_id = store.start_timing_run(environment(), {"rounds": config.rounds, "warmup": config.warmup,
                                                    "min_pass_s": config.min_pass_s, "compile": config.compile,
                                                    "threads": config.threads,
                                                    **timed_on})
    parts = [Cell.from_canonical(r.config) for r in store.rows([c.key for c in cells])]
    if any(in_process_parts(c) for c in parts):  # parts registered in this process exist only here
        outcome = run_timing(cells, config, progress)
    else:
        outcome = run_isolated(run_timing, cells, config, progress)
    store.finish_timing_run(run_id, outcome["speeds"])
    return len(outcome["speeds"])
