"""Executors run cells and hand each result to the driver, which alone writes the store.

``local`` runs cells in fresh worker processes of their own (:mod:`adaptsam.bench.worker`), ``jobs`` at a
time: a cell's memory figures are its own (counted in its own process), and a cell that segfaults or is
killed is one failed row naming the signal. With ``jobs`` > 1 each worker gets ``cores // jobs`` intra-op
threads, for machines where one cell can't use them all: small graphs use extra threads poorly (on 2 cores,
LiteMedSAM at R=64, a decoder-only cell trained 1.15× faster on 2 threads than on 1, LoRA + decoder 1.33×).
Measured on a 2-core AMD EPYC VM the gain was small, so it is not the default there: the 18 cells of the
quick preset took 606 s two at a time on one thread each vs 656 s one at a time on two (each cell ran 1.6–2.2×
slower beside another than alone on two threads). Speed is never taken from these runs (the timing phase
runs alone afterwards); a cell's ``train_s`` is then wall time beside another cell, and the report says so.
Cells whose parts were registered in this process only (decorator registration in a notebook or test) run
here instead, since a worker could not find them. ``ray`` submits
each cell as a Ray task (on an existing cluster with ``address``, or a local instance) with its CPU/GPU
needs, one fresh Ray worker process per task; results come back to the driver as they finish.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adaptsam.bench.cell import CACHE_FOLDER, run_cell
from adaptsam.bench.spec import Cell
from adaptsam.bench.store import CellResult, ResultStore
from adaptsam.bench.worker import Worker, WorkerDied, run_isolated

OnResult = Callable[[Cell, CellResult], None]


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="cell", disable=not enabled, dynamic_ncols=True)


def in_process_parts(cell: Cell) -> bool:
    """Whether any part of ``cell`` was registered in this process only (no distribution provides it)."""
    from adaptsam import registry

    names = {"backbone": cell.backbone, "adapter": cell.adapter, "policy": cell.policy}
    if cell.dataset in registry.datasets.names():
        names["dataset"] = cell.dataset
    return any(registry.REGISTRIES[kind].entry(name).origin == "<in-process>" for kind, name in names.items())


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // jobs)


def run_one(cell: Cell, out: Path, *, isolate: bool = True, device: str = "auto",
            precision: str = "auto") -> CellResult:
    """One cell, in a worker process of its own when it can be; a worker that dies is a failed row."""
    if not isolate or in_process_parts(cell):
        return _run_here(cell, out, device, precision)
    try:
        return run_isolated(_cell_on_threads, 0, cell, out, device, precision)
    except WorkerDied as exc:
        return _died(cell, exc)


def _run_here(cell: Cell, out: Path, device: str, precision: str) -> CellResult:
    return run_cell(cell, out, cache_dir=Path(out) / CACHE_FOLDER, device=device, precision=precision)


def _died(cell: Cell, exc: WorkerDied) -> CellResult:
    return CellResult(cell.key, "failed", error=f"{exc} (out of memory, a crash in native code, or killed)")


def _cell_on_threads(threads: int, cell: Cell, out: Path, device: str, precision: str) -> CellResult:
    """A worker's whole job (local or Ray): ``threads`` intra-op threads (0: torch's default), then the cell,
    whose memory figures are then its own."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return run_cell(cell, out, cache_dir=Path(out) / CACHE_FOLDER, isolated=True, device=device,
                    precision=precision)


class LocalExecutor:
    """Cells in fresh worker processes on this machine, ``jobs`` at a time (default: the bench spec's)."""

    name = "local"

    def __init__(self, isolate: bool = True, *, jobs: int | None = None, device: str | None = None,
                 precision: str | None = None):
        self.isolate = isolate
        # None: the bench spec's (run_bench fills them in)
        self.jobs, self.device, self.precision = jobs, device, precision

    @property
    def _how(self) -> tuple[str, str]:
        """Device and precision the cells run with (``auto`` where neither the executor nor the spec says)."""
        return self.device or "auto", self.precision or "auto"

    def run(self, cells: list[Cell], store: ResultStore, out: Path, *, progress: bool = True,
            on_result: OnResult | None = None) -> None:
        jobs = self.jobs or 1
        side_by_side = jobs > 1 and self.isolate  # cells that run in this process run one at a time
        # cells nothing trains first: their test-image embeddings then wait in the shared cache for the others
        cells = sorted(cells, key=lambda cell: not cell.seed_invariant)
        with _progress(len(cells), progress) as bar:
            def record(cell: Cell, result: CellResult) -> None:
                if side_by_side:
                    result.environment["jobs"] = jobs  # the report says cells ran side by side
                store.finish(result)
                if on_result:
                    on_result(cell, result)
                bar.update(1)

            if not side_by_side:
                for cell in cells:
                    bar.set_description(cell.label)
                    store.claim(cell.key)
                    device, precision = self._how
                    record(cell, run_one(cell, out, isolate=self.isolate, device=device, precision=precision))
            else:
                self._side_by_side(cells, store, out, jobs, record, bar)

    def _start(self, cell: Cell, out: Path, threads: int) -> Worker:
        return Worker(_cell_on_threads, threads, cell, out, *self._how)

    def _side_by_side(self, cells: list[Cell], store: ResultStore, out: Path, jobs: int,
                      record: Callable[[Cell, CellResult], None], bar: Any) -> None:
        """Keep ``jobs`` workers busy, in the order given; results are stored as they finish. An interrupt stops
        every worker."""
        from multiprocessing.connection import wait

        threads = threads_per_job(jobs)
        waiting, running = deque(cells), {}
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    cell = waiting.popleft()
                    store.claim(cell.key)
                    if in_process_parts(cell):  # only this process knows its parts
                        record(cell, _run_here(cell, out, *self._how))
                        continue
                    running[self._start(cell, out, threads)] = cell
                    bar.set_description(" | ".join(c.label for c in running.values()))
                if not running:
                    continue
                ready = set(wait([handle for w in running for handle in w.handles]))
                for worker in [w for w in running if ready & set(w.handles)]:
                    cell = running.pop(worker)
                    try:
                        result = worker.result()
                    except WorkerDied as exc:
                        result = _died(cell, exc)
                    record(cell, result)
        except BaseException:
            for worker in running:
                worker.stop()
            raise


def _remote_cell(canonical: dict[str, Any], out: str, threads: int, device: str = "auto",
                 precision: str = "auto") -> CellResult:
    # "auto" resolves on the worker: Ray shows a task only the GPUs it was given (CUDA_VISIBLE_DEVICES)
    return _cell_on_threads(threads, Cell.from_canonical(canonical), Path(out), device, precision)


class RayExecutor:
    """Each cell a Ray task needing ``cpus_per_cell`` CPUs (and ``gpus_per_cell`` GPUs)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, cpus_per_cell: int = 1,
                 gpus_per_cell: float = 0.0, device: str | None = None, precision: str | None = None):
        from adaptsam.errors import ConfigError

        if isinstance(gpus_per_cell, bool) or not isinstance(gpus_per_cell, (int, float)) or gpus_per_cell < 0:
            raise ConfigError(f"Expected gpus_per_cell to be a number >= 0 (fractions such as 0.5 share a GPU), got "
                              f"{gpus_per_cell!r}.")
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_cell, self.gpus_per_cell = cpus_per_cell, float(gpus_per_cell)
        self.device, self.precision = device, precision  # None: the bench spec's (run_bench fills them in)

    def run(self, cells: list[Cell], store: ResultStore, out: Path, *, progress: bool = True,
            on_result: OnResult | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("The ray executor needs Ray: pip install 'adaptsam[ray]'.") from exc
        started_here = not ray.is_initialized()
        if started_here:
            options: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False,
                                       "log_to_driver": False}
            if self.address:
                options["address"] = self.address
            else:
                options["num_cpus"] = self.num_cpus or os.cpu_count()
            ray.init(**options)
        # max_calls=1: a fresh worker process per cell, so its memory figures are its own
        task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_calls=1)(_remote_cell)
        pending = {}
        try:
            for cell in cells:
                store.claim(cell.key)
                pending[task.remote(cell.canonical(), str(out), self.cpus_per_cell, self.device or "auto",
                                    self.precision or "auto")] = cell
            with _progress(len(cells), progress) as bar:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    cell = pending.pop(done[0])
                    try:
                        result = ray.get(done[0])
                    except Exception as exc:  # the worker died (OOM, segfault): record it, go on
                        result = CellResult(cell.key, "failed", error=f"Ray task failed: {exc}")
                    store.finish(result)
                    if on_result:
                        on_result(cell, result)
                    bar.set_description(cell.label)
                    bar.update(1)
        finally:
            if started_here:
                ray.shutdown()


def make_executor(name: str, address: str | None = None, *, gpus_per_cell: float = 0.0) -> Any:
    if name == "local":
        return LocalExecutor()  # jobs: the bench spec's
    if name == "ray":
        return RayExecutor(address, gpus_per_cell=gpus_per_cell)
    raise ValueError(f"Unknown executor {name!r}; expected local or ray.")
