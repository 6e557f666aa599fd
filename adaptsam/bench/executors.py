"""Executors run cells and hand each result to the driver, which alone writes the store.

``local`` runs cells one after another, each in a fresh worker process of its own
(:mod:`adaptsam.bench.worker`): its memory figures are its own, and a cell that segfaults or is killed is one
failed row naming the signal. Cells whose parts were registered in this process only (decorator
registration in a notebook or test) run here instead, since a worker could not find them. ``ray`` submits
each cell as a Ray task (on an existing cluster with ``address``, or a local instance) with its CPU/GPU
needs, one fresh Ray worker process per task; results come back to the driver as they finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adaptsam.bench.cell import CACHE_FOLDER, run_cell
from adaptsam.bench.spec import Cell
from adaptsam.bench.store import CellResult, ResultStore
from adaptsam.bench.worker import WorkerDied, run_isolated

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


def run_one(cell: Cell, out: Path, *, isolate: bool = True, device: str = "auto",
            precision: str = "auto") -> CellResult:
    """One cell, in a worker process of its own when it can be; a worker that dies is a failed row."""
    cache_dir = Path(out) / CACHE_FOLDER
    how = {"device": device, "precision": precision}
    if not isolate or in_process_parts(cell):
        return run_cell(cell, out, cache_dir=cache_dir, **how)
    try:
        return run_isolated(run_cell, cell, out, cache_dir=cache_dir, isolated=True, **how)
    except WorkerDied as exc:
        return CellResult(cell.key, "failed", error=f"{exc} (out of memory, a crash in native code, or killed)")


class LocalExecutor:
    """Cells one after another, each in a fresh worker process (the default)."""

    name = "local"

    def __init__(self, isolate: bool = True, *, device: str | None = None, precision: str | None = None):
        self.isolate = isolate
        self.device, self.precision = device, precision  # None: the bench spec's (run_bench fills them in)

    def run(self, cells: list[Cell], store: ResultStore, out: Path, *, progress: bool = True,
            on_result: OnResult | None = None) -> None:
        with _progress(len(cells), progress) as bar:
            for cell in cells:
                bar.set_description(cell.label)
                store.claim(cell.key)
                result = run_one(cell, out, isolate=self.isolate, device=self.device or "auto",
                                 precision=self.precision or "auto")
                store.finish(result)
                if on_result:
                    on_result(cell, result)
                bar.update(1)


def _remote_cell(canonical: dict[str, Any], out: str, threads: int, device: str = "auto",
                 precision: str = "auto") -> CellResult:
    import torch

    torch.set_num_threads(threads)
    # "auto" resolves on the worker: Ray shows a task only the GPUs it was given (CUDA_VISIBLE_DEVICES)
    return run_cell(Cell.from_canonical(canonical), out, cache_dir=Path(out) / CACHE_FOLDER, isolated=True,
                    device=device, precision=precision)


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
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, gpus_per_cell=gpus_per_cell)
    raise ValueError(f"Unknown executor {name!r}; expected local or ray.")
