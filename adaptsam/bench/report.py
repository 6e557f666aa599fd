"""``adaptsam report OUT``: results.csv (one row per cell), report.md (ranked tables) and PNG plots.

Per dataset, configurations are ranked by per-image mean Dice (mean over seeds, with a 95% interval), with
the zero-shot (``frozen``) row of the same backbone/policy/R as the reference: the gain over it is marked
*n.s.* when a bootstrap over seeds and test images together can't tell it from noise, and rows whose
interval overlaps the best row's are marked ≈. Speed comes from the bench's timing phase (every distinct
inference graph timed together in interleaved rounds; cells with one graph share one figure): images/s and
the speed ratio to a reference graph taken within each round, with its spread. Memory is the peak of the
training phase and of one inference pass, each above its start. GFLOPs are analytic. Backbones with random
weights are marked † in every table and drawn hollow in every plot.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from adaptsam.bench.classes_report import class_tables
from adaptsam.bench.entries import (  # the row model, also importable here
    UNTRAINED_MARK,
    Entry,
    aggregate,
    environment_line,
    row_value,
)
from adaptsam.bench.stats import paired_seed_image_difference, within_noise
from adaptsam.bench.store import STORE_NAME, ResultStore, Row

CSV_COLUMNS = ("backbone", "adapter", "policy", "resolution", "dataset", "shots", "seed", "status", "mean_dice",
               "mean_iou", "images_per_s", "speed_ratio", "speed_ratio_min", "speed_ratio_max", "reference",
               "images_per_s_compiled", "compile_speedup",
               "rounds", "graph", "latency_p50_ms", "latency_p95_ms", "gflops_executed", "gflops_useful",
               "train_gflops_per_step", "trainable_params", "total_params", "adapter_bytes", "train_mem_mb",
               "infer_mem_mb", "cache_hits", "cache_misses", "train_s", "eval_s", "seed_invariant",
               "backbone_pretrained", "adapter_name", "key", "error")


def _cell_value(row: Row, column: str) -> Any:
    cfg, m, t = row.config, row.metrics, row.timings
    values = {"backbone": cfg["backbone"], "adapter": row.cell.adapter_display, "adapter_name": cfg["adapter"],
              "policy": cfg["policy"], "resolution": cfg["resolution"], "dataset": cfg["dataset"],
              "shots": cfg.get("shots") or "all", "seed": cfg["seed"], "status": row.status, "key": row.key,
              "train_s": t.get("train_s"), "eval_s": t.get("eval_s"),
              "backbone_pretrained": m.get("backbone_pretrained", cfg.get("pretrained")),
              "error": (row.error or "").splitlines()[0] if row.error else ""}
    return values[column] if column in values else row_value(row, column)


def write_csv(rows: list[Row], path: Path) -> Path:
    tmp = _temp_path(path)
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if (v := _cell_value(row, c)) is None else v for c in CSV_COLUMNS])
    tmp.replace(path)
    return path


def _fmt_int(value: float) -> str:
    return f"{int(round(value)):,}"


def _fmt_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _fmt_number(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:{spec}}{unit}"


def speed_cell(entry: Entry) -> str:
    """``12.3×`` with the per-round spread, against the reference the timing phase chose for this cell."""
    speed = entry.speed
    if "speed_ratio" not in speed:
        return "not timed"
    return f"{speed['speed_ratio']:.2f}× ({speed['speed_ratio_min']:.2f}–{speed['speed_ratio_max']:.2f})"


def dataset_table(entries: list[Entry]) -> list[str]:
    """Markdown table of one dataset's entries, ranked by Dice."""
    references = {e.reference_key(): e for e in entries if e.adapter_name == "frozen"}
    ranked = sorted(entries, key=lambda e: -e.dice[0])
    best_low = ranked[0].dice[1] if ranked else 0.0
    lines = ["| # | backbone | adapter | policy | R | shots | Dice (95% CI) | Δ vs zero-shot | IoU | images/s | "
             "× vs reference (round spread) | GFLOPs/img | trainable params | adapter file | train mem | "
             "infer mem | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rank, entry in enumerate(ranked, 1):
        dice, low, high = entry.dice
        near_best = "≈ " if rank > 1 and high >= best_low else ""
        reference = references.get(entry.reference_key())
        if entry.adapter_name == "frozen":
            delta = "reference"
        elif reference is None:
            delta = "–"
        else:
            diff = paired_seed_image_difference(entry.per_image_by_seed, reference.per_image_by_seed)
            value = entry.dice[0] - reference.dice[0]
            delta = f"{value:+.3f}" + (" n.s." if within_noise(diff) else "")
        seeds = f" ({len(entry.rows)} seeds)" if len(entry.rows) > 1 else (
            " (seed-invariant)" if entry.rows[0].metrics.get("seed_invariant") else "")
        lines.append(
            f"| {rank} | {entry.name} | {entry.adapter} | {entry.policy} | {entry.resolution} | "
            f"{entry.shots or 'all'} | {near_best}{dice:.3f} [{low:.3f}, {high:.3f}]{seeds} | {delta} | "
            f"{entry.metric('mean_iou'):.3f} | {_fmt_number(entry.speed.get('images_per_s'), '.2f')} | "
            f"{speed_cell(entry)} | {_fmt_number(entry.metric('gflops_executed'), '.2f')} | "
            f"{_fmt_int(entry.metric('trainable_params'))} | {_fmt_bytes(entry.metric('adapter_bytes'))} | "
            f"{_fmt_number(entry.metric('train_mem_mb'), '.0f', ' MB')} | "
            f"{_fmt_number(entry.metric('infer_mem_mb'), '.0f', ' MB')} | {entry.timing('train_s'):.1f} |")
    return lines


def timing_note(store: ResultStore, rows: list[Row]) -> list[str]:
    """What the speed columns mean in this report: which timing run, how many rounds, which references."""
    run = store.latest_timing_run()
    if run is None:
        return ["Speed: not timed yet (the timing phase runs after the cells; rerun `adaptsam bench` on this "
                "folder to time it)."]
    speeds = [r.speed for r in rows if r.speed]
    graphs = {s["graph"] for s in speeds}
    refs = sorted({s["reference"] for s in speeds})
    machine = run["machine"]
    threads = run["config"].get("threads") or machine.get("threads", "?")  # 0: torch's default, the machine's
    return [f"Speed: timing run {run['run_id']} on {machine.get('device', '?')} ({threads} "
            f"thread{'' if threads == 1 else 's'}): {len(graphs)} distinct inference graphs for {len(speeds)} cells, "
            f"timed together in {run['config'].get('rounds', '?')} interleaved rounds after "
            f"{run['config'].get('warmup', '?')} "
            f"warm-up pass(es); images/s is the median over rounds, and cells with one graph share one figure. "
            f"The ratio is the cell's speed ÷ its reference's, taken within each round: median (min–max over "
            f"rounds). References: {'; '.join(refs)}."]


def compiled_table(rows: list[Row]) -> list[str]:
    """One line per distinct graph timed with ``--compile``: eager vs torch.compile images/s, timed in the same
    rounds (nothing when the bench did not compile)."""
    graphs: dict[str, dict[str, Any]] = {}
    for row in rows:
        if "images_per_s_compiled" in row.speed or "compile_error" in row.speed:
            graphs.setdefault(row.speed["graph"], row.speed)
    if not graphs:
        return []
    lines = ["## torch.compile", "", "| graph | images/s eager | images/s compiled | speed-up (median of rounds) |",
             "|---|---:|---:|---:|"]
    for speed in sorted(graphs.values(), key=lambda s: s["graph_description"]):
        if "compile_error" in speed:
            compiled, gain = f"n/a ({speed['compile_error'][:80].replace('|', '/')})", "n/a"
        else:
            compiled, gain = f"{speed['images_per_s_compiled']:.2f}", f"{speed['compile_speedup']:.2f}×"
        lines.append(f"| {speed['graph_description']} | {speed['images_per_s']:.2f} | {compiled} | {gain} |")
    return [*lines, ""]


def write_markdown(store: ResultStore, rows: list[Row], entries: list[Entry], plots: list[Path], path: Path) -> Path:
    spec = store.meta("spec", {}) or {}
    env = next((r.environment for r in rows if r.environment), {})
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    out = [f"# adaptsam bench: {spec.get('name', 'custom')}", ""]
    if spec.get("note"):
        out += [spec["note"], ""]
    earlier = len(store.statuses()) - len(rows)  # every stored cell, counted without loading its row
    out += [f"{len(rows)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "."
            + (f" The store also keeps {earlier} result(s) of earlier grids in this folder, not shown here."
               if earlier else ""),
            environment_line(env), "",
            "Dice is the per-image mean at the evaluation resolution R, against the mask at R. The interval is a "
            "95% t-interval over seeds, or with one seed a bootstrap over test images. ≈: interval overlaps the "
            "best row's. n.s.: a bootstrap over seeds and test images together (images paired) can't separate it "
            "from zero-shot. "
            f"{UNTRAINED_MARK}: random-init backbone (untrained). images/s at a fixed batch on the inference copy "
            "(adapter merged, BatchNorm folded, channels-last).", "", *timing_note(store, rows), "",
            f"Memory: {memory_method(rows)}; training = activations, gradients and optimiser state of training "
            "(embeddings from the bench's shared cache not counted), inference = one forward pass of the "
            "inference copy at the timing batch; model weights are not counted. GFLOPs/img: analytic count of "
            "the inference copy (n/a where a part declares none).", ""]
    by_dataset: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_dataset[entry.dataset].append(entry)
    for dataset, group in sorted(by_dataset.items()):
        out += [f"## {dataset}", "", *dataset_table(group), ""]
    out += compiled_table(rows)
    out += [class_tables(rows)]  # multi-class datasets: mIoU and per-class IoU (adaptsam.bench.classes_report)
    if plots:
        out += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    problems = [r for r in rows if r.status in ("failed", "skipped", "pending", "running")]
    if problems:
        out += ["## Not measured", "", "| cell | status | reason |", "|---|---|---|"]
        for row in problems:
            reason = (row.error or "").splitlines()[0] if row.error else ""
            out.append(f"| {row.label} | {row.status} | {reason.replace('|', '/')} |")
        out.append("")
    tmp = _temp_path(path)
    tmp.write_text("\n".join(out))
    tmp.replace(path)
    return path


def memory_method(rows: list[Row]) -> str:
    methods = sorted({r.metrics["memory_method"] for r in rows if r.metrics.get("memory_method")})
    return "; ".join(methods) if methods else "not measured"


def _temp_path(path: Path) -> Path:
    """A temp file next to ``path`` unique to this process, so two ``report`` calls never write one file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_report(out: str | os.PathLike[str]) -> Path:
    """Write results.csv, the plots, report.html and report.md from ``out``'s store; returns report.md's path."""
    from adaptsam.bench.plots import write_plots

    out = Path(out)
    store_path = out / STORE_NAME
    if not store_path.is_file():
        from adaptsam.errors import DataError

        raise DataError(f"No bench results in {out} (expected {store_path}); run adaptsam bench --out {out} first.")
    with ResultStore(store_path) as store:
        rows = store.grid_rows()
        entries = aggregate(rows)
        write_csv(rows, out / "results.csv")
        plots = write_plots(entries, out)
        from adaptsam.bench.html_report import report_model, write_html  # report.html: same rows, same plots

        write_html(report_model(store, rows, entries), plots, out / "report.html")
        return write_markdown(store, rows, entries, plots, out / "report.md")
