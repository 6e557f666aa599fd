"""The report's row model: one :class:`Entry` per configuration, aggregated over its seeds.

Every view of a bench (report.md and results.csv in :mod:`adaptsam.bench.report`, report.html in
:mod:`adaptsam.bench.html_report`) is built from these entries. They live below both views, so
``report`` can write the HTML page without the two importing each other; ``adaptsam.bench.report``
re-exports every name.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adaptsam.bench.stats import bootstrap_interval, seed_interval
from adaptsam.bench.store import Row

UNTRAINED_MARK = "†"


def environment_line(env: dict[str, Any]) -> str:
    """Where the cells ran, in one sentence (both views): device, threads per cell, cells side by side."""
    jobs = env.get("jobs", 1)
    side_by_side = f" per cell, {jobs} cells at a time (train s is wall time beside another cell)" if jobs > 1 else ""
    return (f"Environment: {env.get('device', '?')}, {env.get('threads', '?')} threads{side_by_side}, torch "
            f"{env.get('torch', '?')}, adaptsam {env.get('adaptsam', '?')}"
            + (f" (git {str(env['git_sha'])[:10]})" if env.get("git_sha") else "") + ".")


@dataclass
class Entry:
    """One configuration aggregated over its seeds."""

    backbone: str
    adapter: str
    adapter_name: str
    policy: str
    resolution: int
    dataset: str
    shots: int | None
    pretrained: bool
    rows: list[Row] = field(default_factory=list)

    def metric(self, name: str) -> float:
        """Mean over seeds of a stored metric or, for speed figures, of the timing phase's (nan when absent)."""
        values = [row_value(r, name) for r in self.rows]
        values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return float(np.mean(values)) if values else float("nan")

    @property
    def speed(self) -> dict[str, Any]:
        """The timing phase's figures (shared by every seed: one graph)."""
        return next((r.speed for r in self.rows if r.speed), {})

    def timing(self, name: str) -> float:
        return float(np.mean([r.timings.get(name, np.nan) for r in self.rows]))

    @property
    def per_image_by_seed(self) -> list[dict[str, float]]:
        return [{item["id"]: item["dice"] for item in r.metrics.get("per_image", [])} for r in self.rows]

    @property
    def per_image(self) -> dict[str, float]:
        scores: dict[str, list[float]] = defaultdict(list)
        for row in self.rows:
            for item in row.metrics.get("per_image", []):
                scores[item["id"]].append(item["dice"])
        return {k: float(np.mean(v)) for k, v in scores.items()}

    @property
    def dice(self) -> tuple[float, float, float]:
        if len(self.rows) > 1:
            return seed_interval([r.metrics["mean_dice"] for r in self.rows])
        return bootstrap_interval(list(self.per_image.values()))

    @property
    def name(self) -> str:
        mark = UNTRAINED_MARK if not self.pretrained else ""
        return f"{self.backbone}{mark}"

    def reference_key(self) -> tuple:
        return self.backbone, self.policy, self.resolution, self.dataset, self.shots

    def speed_key(self) -> tuple:
        return self.backbone, self.adapter, self.resolution, self.dataset, self.shots


def row_value(row: Row, name: str) -> Any:
    """A stored metric of ``row`` or, for speed figures, the timing phase's (None when absent)."""
    return row.metrics[name] if name in row.metrics else row.speed.get(name)


def aggregate(rows: list[Row]) -> list[Entry]:
    """The finished rows grouped into one entry per configuration (seeds together), in first-seen order."""
    groups: dict[tuple, Entry] = {}
    for row in rows:
        if row.status != "done":
            continue
        cell = row.cell
        pretrained = bool(row.metrics.get("backbone_pretrained", cell.pretrained))
        key = (cell.backbone, cell.adapter_display, cell.policy, cell.resolution, cell.dataset, cell.shots, pretrained)
        if key not in groups:
            groups[key] = Entry(cell.backbone, cell.adapter_display, cell.adapter, cell.policy, cell.resolution,
                                cell.dataset, cell.shots, pretrained)
        groups[key].rows.append(row)
    return list(groups.values())
