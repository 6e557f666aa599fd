"""One bench cell: build → policy → adapter → train → evaluate → cost columns, as one recorded result.

A cell never crashes the grid: an incompatible combination (a prompt-free adapter on a prompted bench, an
R the backbone can't take) is recorded as *skipped* with the reason; any other exception as *failed* with
its traceback. Speed is **not** measured here: the bench times every distinct inference graph together in
one timing phase after training (:mod:`adaptsam.bench.timing`), so that no row's images/s depends on what
the machine happened to do while that one cell ran. Memory is measured here, per phase (training, then one
inference pass of the deployed copy), each above the level at the phase's start — see
:class:`~adaptsam.bench.measure.PeakMemory` for why the figure is repeatable.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from adaptsam.bench.spec import Cell
from adaptsam.bench.store import CellResult
from adaptsam.errors import IncompatibleError

CACHE_FOLDER = "embeddings"  # under the bench's output folder, shared by every cell of the bench
TRAIN_MEMORY_STEPS = 2  # CPU training memory is counted over the first steps (adaptsam.bench.live_tensors)


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


def run_cell(cell: Cell, workdir: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
             isolated: bool = False, device: str = "auto", precision: str = "auto") -> CellResult:
    """Run ``cell``; every failure becomes a result. ``cache_dir`` shares frozen-encoder embeddings between
    cells; ``isolated`` says this process runs this cell alone (its memory figures are then the cell's own).
    ``device``/``precision`` (the bench's, not the cell's: not in its key) say where and how it runs."""
    from adaptsam.bench.measure import PeakMemory, environment, inference_memory
    from adaptsam.devices import resolve_precision
    from adaptsam.engine.cache import EmbeddingCache
    from adaptsam.engine.evaluate import evaluate
    from adaptsam.engine.experiment import build_model, test_data, training_data
    from adaptsam.engine.train import fit
    from adaptsam.inference import for_inference
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
        experiment = cell.experiment(device, precision)
        if cache_dir is not None:
            experiment = replace(experiment, train=replace(experiment.train, cache_dir=str(cache_dir)))
        t = time.perf_counter()
        model = build_model(experiment)
        t = lap("build_s", t)
        # inference memory first, on a clean heap, where the graph does not depend on the training data (a
        # prompt-free head knows its classes only after setup): measured after training, one graph's figure
        # depended on what training had left in the allocator (73-113 MB across the seeds of one bench)
        infer_first = model.uses_prompts
        infer_mb = inference_memory(for_inference(model), cell.throughput_batch) if infer_first else None
        t = lap("memory_s", t)
        ran_at = resolve_precision(experiment.precision, model.device)
        with PeakMemory(model.device, optimiser_steps=TRAIN_MEMORY_STEPS) as train_peak:
            trained = fit(model, training_data(experiment), replace(experiment.train, bf16=ran_at == "bf16"))
        t = lap("train_s", t)
        frozen_encoder = model.adapter is None or model.adapter.encoder_frozen(model)
        eval_cache = EmbeddingCache(model, directory=cache_dir) if frozen_encoder else None
        scores = evaluate(model, test_data(experiment), prompt=experiment.prompt, progress=False, cache=eval_cache,
                          precision=ran_at)
        t = lap("eval_s", t)
        deployed = for_inference(model)
        if not infer_first:
            infer_mb = inference_memory(deployed, cell.throughput_batch)
        costs = cost_columns(model, deployed, cell)
        del deployed
        lap("measure_s", t)
        adapter_path = Path(workdir) / "adapters" / f"{cell.key}.safetensors"
        from adaptsam.adapters.io import save_adapter

        save_adapter(model, adapter_path)  # bookkeeping: counted in no phase
        counts = count_parameters(model)
        metrics = {
            "mean_dice": scores.mean_dice, "mean_iou": scores.mean_iou, "dice": scores.dice, "iou": scores.iou,
            "n_images": scores.n_images, "n_skipped": scores.n_skipped, "per_class": scores.per_class,
            "per_image": scores.per_image, "throughput_batch": cell.throughput_batch,
            "trainable_params": counts.trainable, "frozen_params": counts.frozen, "total_params": counts.total,
            "stored_bytes": counts.stored_bytes, "adapter_bytes": adapter_path.stat().st_size,
            "train_mem_mb": train_peak.megabytes if trained.steps else None, "infer_mem_mb": infer_mb,
            "memory_method": train_peak.method + ("" if isolated or "resident" not in train_peak.method
                                                  else " (cell not isolated in its own process)"),
            "train_steps": trained.steps, "final_loss": trained.final_loss,
            "train_images_per_s": trained.images_per_second,
            "embedding_cache": trained.cached or eval_cache is not None,
            "cache_hits": trained.cache_hits + (eval_cache.hits if eval_cache else 0),
            "cache_misses": trained.cache_misses + (eval_cache.misses if eval_cache else 0),
            "seed_invariant": cell.seed_invariant, **costs,
            "backbone_pretrained": model.info.pretrained, "adapter_file": str(adapter_path),
            "device": str(model.device), "precision": ran_at,
        }
        result = CellResult(cell.key, "done", metrics=metrics, timings=timings, environment=env)
    except IncompatibleError as exc:
        result = CellResult(cell.key, "skipped", timings=timings, environment=env, error=str(exc))
    except Exception as exc:  # one failing cell is one recorded row, never a crashed grid
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
        result = CellResult(cell.key, "failed", timings=timings, environment=env, error=f"{exc}\n\n{detail}")
    timings["total_s"] = time.perf_counter() - start
    timings["measure_s"] = timings.get("measure_s", 0.0) + timings.pop("memory_s", 0.0)
    work = sum(timings.get(k, 0.0) for k in ("build_s", "train_s", "eval_s", "measure_s"))
    timings["bookkeeping_s"] = max(0.0, timings["total_s"] - work)
    return result


def cost_columns(model: Any, deployed: Any, cell: Cell) -> dict[str, Any]:
    """Analytic GFLOPs per image of the deployed copy (executed / useful; what the timing phase times) and per
    training step of the model as trained; ``None`` (shown as n/a) where a part declares no count, never 0."""
    from adaptsam.bench import flops

    out: dict[str, Any] = {"gflops_executed": None, "gflops_useful": None, "train_gflops_per_step": None}
    inference = getattr(flops, "inference_gflops", None)
    training = getattr(flops, "training_gflops_per_step", None)
    try:
        if inference is not None:
            counted = inference(deployed, batch=cell.throughput_batch)
            if counted is not None:
                out["gflops_executed"], out["gflops_useful"] = counted["executed"], counted["useful"]
        if training is not None:
            out["train_gflops_per_step"] = training(model, cell.batch_size)
    except (NotImplementedError, TypeError, ValueError, AttributeError) as exc:  # a part the counter can't walk
        out["flops_note"] = f"not counted: {type(exc).__name__}: {exc}"
    return out
