"""Run one cell in isolation, and a whole bench: register cells, skip finished ones, run the rest, report.

A cell never crashes the grid: an incompatible combination (a prompt-free adapter on a prompted bench, an
R the backbone can't take) is recorded as *skipped* with the reason; any other exception as *failed* with
its traceback. Cells are identified by config hash, so a killed bench resumes where it stopped.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptsam.bench.spec import BenchSpec, Cell
from adaptsam.bench.store import CellResult, ResultStore
from adaptsam.errors import IncompatibleError

STORE_NAME = "results.sqlite"


def check_compatible(cell: Cell) -> None:
    """Refuse combinations that can't be measured, before building anything."""
    from adaptsam import registry

    adapter = registry.adapters.get(cell.adapter)
    uses_prompts = getattr(adapter, "uses_prompts", True)
    if uses_prompts and cell.prompt == "none":
        raise IncompatibleError(f"{cell.adapter} needs prompts; this bench gives none (prompt: none).")
    if not uses_prompts and cell.prompt != "none":
        raise IncompatibleError(f"{cell.adapter} predicts without prompts; this bench gives {cell.prompt} prompts "
                                f"(run it in a bench with prompt: none).")


def run_cell(cell: Cell, workdir: str | os.PathLike[str]) -> CellResult:
    """build → policy → adapter → train → evaluate → measure, timed; every failure becomes a result."""
    from adaptsam.bench.measure import PeakMemory, environment, measure_throughput
    from adaptsam.engine.evaluate import evaluate
    from adaptsam.engine.experiment import build_model, test_data, training_data
    from adaptsam.engine.train import fit
    from adaptsam.params import count_parameters

    timings: dict[str, float] = {}
    start = time.perf_counter()
    env = environment()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        return now

    try:
        check_compatible(cell)
        experiment = cell.experiment()
        with PeakMemory("cuda" if env["cuda"] else "cpu") as peak:
            t = time.perf_counter()
            model = build_model(experiment)
            t = lap("build_s", t)
            trained = fit(model, training_data(experiment), experiment.train)
            t = lap("train_s", t)
            scores = evaluate(model, test_data(experiment), prompt=experiment.prompt, progress=False)
            lap("eval_s", t)
            adapter_path = Path(workdir) / "adapters" / f"{cell.key}.safetensors"
            from adaptsam.adapters.io import save_adapter

            save_adapter(model, adapter_path)  # bookkeeping: counted in neither phase
            t = time.perf_counter()
            speed = measure_throughput(model, cell.throughput_batch)
            lap("measure_s", t)
        counts = count_parameters(model)
        metrics = {
            "mean_dice": scores.mean_dice, "mean_iou": scores.mean_iou, "dice": scores.dice, "iou": scores.iou,
            "n_images": scores.n_images, "n_skipped": scores.n_skipped, "per_class": scores.per_class,
            "per_image": scores.per_image, **speed.to_dict(),
            "trainable_params": counts.trainable, "frozen_params": counts.frozen, "total_params": counts.total,
            "stored_bytes": counts.stored_bytes, "adapter_bytes": adapter_path.stat().st_size,
            "peak_mem_mb": peak.megabytes, "train_steps": trained.steps, "final_loss": trained.final_loss,
            "train_images_per_s": trained.images_per_second, "embedding_cache": trained.cached,
            "backbone_pretrained": model.info.pretrained, "adapter_file": str(adapter_path),
        }
        result = CellResult(cell.key, "done", metrics=metrics, timings=timings, environment=env)
    except IncompatibleError as exc:
        result = CellResult(cell.key, "skipped", timings=timings, environment=env, error=str(exc))
    except Exception as exc:  # one failing cell is one recorded row, never a crashed grid
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
        result = CellResult(cell.key, "failed", timings=timings, environment=env, error=f"{exc}\n\n{detail}")
    timings["total_s"] = time.perf_counter() - start
    work = sum(timings.get(k, 0.0) for k in ("build_s", "train_s", "eval_s", "measure_s"))
    timings["bookkeeping_s"] = max(0.0, timings["total_s"] - work)
    return result


@dataclass
class BenchSummary:
    out: Path
    total: int
    ran: int
    statuses: dict[str, int] = field(default_factory=dict)
    report: Path | None = None


def run_bench(spec: BenchSpec, out: str | os.PathLike[str], *, executor: Any = None, retry_failed: bool = False,
              progress: bool = True, report: bool = True, on_result: Any = None) -> BenchSummary:
    """Run every cell of ``spec`` not already done in ``out``'s store, then write the report."""
    from adaptsam.bench.executors import LocalExecutor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = spec.cells()
    with ResultStore(out / STORE_NAME) as store:
        store.register(cells)
        store.set_meta("spec", spec.to_dict())
        store.reset(["running", "pending"])  # cells a killed run left half-way start over
        if retry_failed:
            store.reset(["failed"])
        statuses = store.statuses()
        todo = [c for c in cells if statuses[c.key] == "pending"]
        (executor or LocalExecutor()).run(todo, store, out, progress=progress, on_result=on_result)
        final = store.statuses()
    counts: dict[str, int] = {}
    for cell in cells:
        counts[final[cell.key]] = counts.get(final[cell.key], 0) + 1
    summary = BenchSummary(out=out, total=len(cells), ran=len(todo), statuses=counts)
    if report:
        from adaptsam.bench.report import write_report

        summary.report = write_report(out)
    return summary
