"""Multi-class results for report.md: mIoU and a per-class IoU table of the best cells on each multi-class
dataset (e.g. CamVid's 11 classes).

What users of semantic segmentation read: per class, the IoU of its pixels pooled over the scored test
images (``pooled_iou`` from ``adaptsam.engine.evaluate``; ignore pixels, 255, never count), and mIoU, their
mean over the classes present in the test truth. A class seen only in predictions (absent from the test
images' truth) has no IoU to average: it is marked ``absent`` and left out of the mean. Seeds of one
configuration are averaged per class.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

ABSENT = "absent"


def _config_label(row: Any) -> str:
    return row.label.rsplit("/seed", 1)[0]


def _class_ious(rows: list[Any]) -> dict[str, float | None]:
    """Per class: pooled IoU averaged over the seeds' rows, or None when absent from the test truth."""
    values: dict[str, list[float]] = defaultdict(list)
    absent: set[str] = set()
    for row in rows:
        for name, scores in (row.metrics.get("per_class") or {}).items():
            if scores.get("true_pixels", 1) == 0:
                absent.add(name)
            elif "pooled_iou" in scores:
                values[name].append(float(scores["pooled_iou"]))
    out: dict[str, float | None] = {name: float(np.mean(v)) for name, v in values.items()}
    out.update({name: None for name in absent - set(values)})
    return out


def mean_iou(ious: dict[str, float | None]) -> float:
    present = [v for v in ious.values() if v is not None]
    return float(np.mean(present)) if present else float("nan")


def class_tables(rows: list[Any], best: int = 6) -> str:
    """Markdown: per multi-class dataset, the ``best`` configurations by mIoU (seeds averaged), one column each,
    one line per class and an mIoU line; "" when no finished cell has more than one class."""
    groups: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        per_class = row.metrics.get("per_class") if row.status == "done" else None
        if per_class and len(per_class) > 1 and any("pooled_iou" in s for s in per_class.values()):
            groups[row.cell.dataset][_config_label(row)].append(row)
    out: list[str] = []
    for dataset, configs in sorted(groups.items()):
        scored = {label: _class_ious(group) for label, group in configs.items()}
        ranked = sorted(scored, key=lambda label: -np.nan_to_num(mean_iou(scored[label]), nan=-1.0))[:best]
        classes = sorted({c for label in ranked for c in scored[label]})
        out += [f"## {dataset}: per-class IoU", "",
                f"IoU of each class's pixels pooled over the test images scored; mIoU = mean over the classes "
                f"present in the test truth ({ABSENT}: no test pixel of that class, not averaged). Best "
                f"{len(ranked)} of {len(scored)} configurations by mIoU; seeds averaged.", "",
                "| class | " + " | ".join(label.replace("|", "/") for label in ranked) + " |",
                "|---|" + "---:|" * len(ranked)]
        for name in classes:
            cells = [scored[label].get(name, float("nan")) for label in ranked]
            out.append(f"| {name} | " + " | ".join(ABSENT if v is None else f"{v:.3f}" for v in cells) + " |")
        out.append("| **mIoU** | " + " | ".join(f"**{mean_iou(scored[label]):.3f}**" for label in ranked) + " |")
        out.append("")
    return "\n".join(out)
