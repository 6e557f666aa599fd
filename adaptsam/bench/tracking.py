"""Optional experiment tracking of bench cells (Weights & Biases; offline unless configured online)."""

from __future__ import annotations

import os
from typing import Any

from adaptsam.bench.spec import Cell
from adaptsam.bench.store import CellResult

# speed is not here: it is measured for all cells together after training (the timing phase), not per cell
SCALARS = ("mean_dice", "mean_iou", "dice", "iou", "trainable_params", "total_params", "adapter_bytes",
           "train_mem_mb", "infer_mem_mb", "gflops_executed", "gflops_useful", "train_gflops_per_step",
           "cache_hits", "final_loss")


class WandbCellLogger:
    """One W&B run per finished cell: its config, status, scalar metrics and timings."""

    def __init__(self, project: str = "adaptsam-bench", group: str | None = None):
        try:
            import wandb
        except ImportError as exc:
            raise RuntimeError("--wandb needs Weights & Biases: pip install 'adaptsam[wandb]'.") from exc
        self.wandb = wandb
        self.project, self.group = project, group
        self.mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")

    def __call__(self, cell: Cell, result: CellResult) -> None:
        run = self.wandb.init(project=self.project, group=self.group, name=cell.label, mode=self.mode,
                              config=cell.canonical(), reinit=True)
        summary: dict[str, Any] = {"status": result.status, **{k: result.metrics[k] for k in SCALARS
                                                              if k in result.metrics}}
        summary.update({f"time/{k}": v for k, v in result.timings.items()})
        run.summary.update(summary)
        run.finish()
