"""``OUT/report.html`` and ``adaptsam report --json``: one data model of the bench, two renderings.

The model is built from the row model report.md uses too (``entries.aggregate`` → ``Entry``, ranked by Dice),
so the HTML page, the JSON and report.md never disagree. The page is self-contained (inline CSS and JS, plots as
``data:`` PNGs) and carries a Content-Security-Policy of ``default-src 'none'``, so a browser opening it
makes no network request of any kind; sorting, filtering and the expandable details need no server.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from adaptsam.bench.entries import UNTRAINED_MARK, Entry, aggregate, environment_line
from adaptsam.bench.stats import pareto_front
from adaptsam.bench.store import STORE_NAME, ResultStore, Row

TEMPLATE = "report.html.j2"
# (key, title, type): what each results table shows; the sort key is the raw number behind the shown text
COLUMNS = (("rank", "#", "num"), ("backbone", "backbone", "text"), ("adapter", "adapter", "text"),
           ("policy", "policy", "text"), ("resolution", "R", "num"), ("shots", "shots", "num"),
           ("dice", "Dice", "num"), ("dice_ci", "95% CI", "text"), ("iou", "IoU", "num"),
           ("images_per_s", "images/s", "num"), ("speed_ratio", "× vs reference", "num"),
           ("gflops_executed", "GFLOPs/img", "num"), ("trainable_params", "trainable params", "num"),
           ("adapter_bytes", "adapter bytes", "num"), ("train_mem_mb", "train mem MB", "num"),
           ("infer_mem_mb", "infer mem MB", "num"),
           ("train_s", "train s", "num"), ("seeds", "seeds", "num"))


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN/inf/missing → None."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _cell(row: Row) -> dict[str, Any]:
    metrics = {k: v for k, v in row.metrics.items() if k != "per_image"}
    return {"key": row.key, "label": row.label, "status": row.status, "config": row.config, "metrics": metrics,
            "timings": row.timings, "speed": row.speed, "environment": row.environment, "error": row.error or ""}


def _metric(entry: Entry, name: str) -> float | None:
    """A metric averaged over the entry's seeds, or None where a cell did not record it."""
    try:
        return _number(entry.metric(name))
    except KeyError:
        return None


def _entry(rank: int, entry: Entry, best: bool, pareto: bool) -> dict[str, Any]:
    dice, low, high = entry.dice
    return {"rank": rank, "backbone": entry.name, "adapter": entry.adapter, "adapter_name": entry.adapter_name,
            "policy": entry.policy, "resolution": entry.resolution, "shots": entry.shots,
            "pretrained": entry.pretrained, "dice": _number(dice), "dice_low": _number(low),
            "dice_high": _number(high), "iou": _metric(entry, "mean_iou"),
            "images_per_s": _metric(entry, "images_per_s"),
            "trainable_params": _metric(entry, "trainable_params"),
            "adapter_bytes": _metric(entry, "adapter_bytes"),
            "speed_ratio": _metric(entry, "speed_ratio"), "gflops_executed": _metric(entry, "gflops_executed"),
            "train_mem_mb": _metric(entry, "train_mem_mb"), "infer_mem_mb": _metric(entry, "infer_mem_mb"),
            "train_s": _number(entry.timing("train_s")),
            "seeds": len(entry.rows), "best": best, "pareto": pareto, "cells": [_cell(r) for r in entry.rows]}


def report_model(store: ResultStore, rows: list[Row], entries: list[Entry]) -> dict[str, Any]:
    """Everything the report says, as plain data (what ``adaptsam report --json`` prints)."""
    spec = store.meta("spec", {}) or {}
    env = next((r.environment for r in rows if r.environment), {})
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    by_dataset: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_dataset[entry.dataset].append(entry)
    datasets = []
    for name, group in sorted(by_dataset.items()):
        ranked = sorted(group, key=lambda e: -e.dice[0])
        front = set(pareto_front([(_metric(e, "images_per_s") or 0.0, e.dice[0]) for e in ranked]))
        datasets.append({"name": name, "rows": [_entry(i + 1, e, i == 0, i in front) for i, e in enumerate(ranked)]})
    problems = [{"label": r.label, "status": r.status, "key": r.key, "error": r.error or "",
                 "reason": (r.error or "").splitlines()[0] if r.error else ""}
                for r in rows if r.status in ("failed", "skipped", "pending", "running")]
    return {"name": spec.get("name", "custom"), "note": spec.get("note", ""), "spec": spec,
            "cells": dict(sorted(counts.items())), "environment": env, "datasets": datasets, "problems": problems}


def to_json(model: dict[str, Any]) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float | np.floating):
            return _number(value)
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, np.integer):
            return int(value)
        return value

    return json.dumps(clean(model), indent=2, default=str, allow_nan=False)


def _shown(row: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(text shown, value sorted by) for each column of one table row."""
    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    show = {"rank": str(row["rank"]), "backbone": row["backbone"], "adapter": row["adapter"],
            "policy": row["policy"], "resolution": str(row["resolution"]), "shots": str(row["shots"] or "all"),
            "dice": fmt(row["dice"], ".3f"), "iou": fmt(row["iou"], ".3f"),
            "dice_ci": f"[{fmt(row['dice_low'], '.3f')}, {fmt(row['dice_high'], '.3f')}]",
            "images_per_s": fmt(row["images_per_s"], ".2f"), "trainable_params": fmt(row["trainable_params"], ",.0f"),
            "adapter_bytes": fmt(row["adapter_bytes"], ",.0f"), "speed_ratio": fmt(row["speed_ratio"], ".2f"),
            "gflops_executed": fmt(row["gflops_executed"], ".2f"), "train_mem_mb": fmt(row["train_mem_mb"], ".0f"),
            "infer_mem_mb": fmt(row["infer_mem_mb"], ".0f"),
            "train_s": fmt(row["train_s"], ".1f"), "seeds": str(row["seeds"])}
    sort = {k: ("" if row.get(k) is None else row[k]) for k in show}
    sort.update(shots=row["shots"] or 10**9, dice_ci=show["dice_ci"])
    return show, sort


def write_html(model: dict[str, Any], plots: list[Path], path: Path) -> Path:
    """Render ``model`` (from :func:`report_model`) and the PNG ``plots`` into one self-contained page."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("adaptsam.bench", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    page = dict(model)
    page["summary"] = f"{sum(model['cells'].values())} cells: " + ", ".join(
        f"{v} {k}" for k, v in model["cells"].items()) + "."
    page["environment_line"] = environment_line(model["environment"])
    page["datasets"] = []
    for ds in model["datasets"]:
        rows = []
        for row in ds["rows"]:
            show, sort = _shown(row)
            cells = [{**c, "text": to_json({k: c[k] for k in ("config", "metrics", "timings", "environment")})}
                     for c in row["cells"]]
            search = " ".join(show[k] for k in ("backbone", "adapter", "policy", "resolution", "shots")).lower()
            rows.append({**row, "show": show, "sort": sort, "cells": cells, "search": search})
        page["datasets"].append({"name": ds["name"], "rows": rows})
    images = [{"name": p.stem, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for p in plots]
    html = env.get_template(TEMPLATE).render(m=page, plots=images, untrained_mark=UNTRAINED_MARK,
                                             columns=[{"key": k, "title": t, "type": ty} for k, t, ty in COLUMNS])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique per process: two reports never share one
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def report_json(out: str | Path) -> str:
    """The report model of bench folder ``out`` as JSON text (``adaptsam report OUT --json``)."""
    with ResultStore(Path(out) / STORE_NAME) as store:
        rows = store.grid_rows()
        return to_json(report_model(store, rows, aggregate(rows)))
