"""One experiment = backbone × adapter × policy × R × dataset × shots × seed × training budget.

``adaptsam train`` runs one; every bench cell is one. The experiment builds the model, the (k-shot)
training set and the test set, trains, evaluates at R, and (on the main process) writes the adapter file
and ``metrics.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from adaptsam.engine.distributed import DistContext, barrier
from adaptsam.engine.evaluate import EvalResult, evaluate
from adaptsam.engine.losses import LossConfig
from adaptsam.engine.train import TrainConfig, TrainResult, fit
from adaptsam.model import SamModel


@dataclass(frozen=True)
class Experiment:
    backbone: str = "lite_medsam"
    adapter: str = "frozen"
    adapter_cfg: dict[str, Any] = field(default_factory=dict)
    policy: str = "native"
    policy_cfg: dict[str, Any] = field(default_factory=dict)
    resolution: int = 128
    data: str = "synthetic"  # a registered dataset name or a folder path
    shots: int | None = None  # k images per class from the training split (None: all)
    seed: int = 0
    checkpoint: str | None = None
    pretrained: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_split: str = "test"
    eval_limit: int | None = None  # score the first N images of the split only
    prompt: str = "box"

    def __post_init__(self) -> None:
        if self.shots is not None and self.shots < 1:
            raise ValueError(f"Expected shots >= 1 (images per class), got {self.shots}.")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"Expected eval_limit >= 1, got {self.eval_limit}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Experiment:
        """From YAML/JSON-like values; ``train`` may be a dict (with ``loss`` a dict too)."""
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown experiment keys {unknown}; expected some of {sorted(known)}.")
        train = values.get("train")
        if isinstance(train, dict):
            train = dict(train)
            train_known = {f.name for f in fields(TrainConfig)}
            bad = sorted(set(train) - train_known)
            if bad:
                raise ValueError(f"Unknown train keys {bad}; expected some of {sorted(train_known)}.")
            if isinstance(train.get("loss"), dict):
                train["loss"] = LossConfig(**train["loss"])
            values["train"] = TrainConfig(**train)
        return cls(**values)


def build_model(exp: Experiment) -> SamModel:
    from adaptsam.api import create_model

    return create_model(exp.backbone, checkpoint=exp.checkpoint, pretrained=exp.pretrained, policy=exp.policy,
                        policy_cfg=exp.policy_cfg, resolution=exp.resolution, adapter=exp.adapter,
                        adapter_cfg=exp.adapter_cfg, seed=exp.seed)


def training_data(exp: Experiment) -> Any:
    from adaptsam.data import LowResDataset, k_shot_indices, open_dataset

    base = open_dataset(exp.data, "train")
    indices = k_shot_indices(base, exp.shots, seed=exp.seed) if exp.shots else None
    return LowResDataset(base, exp.resolution, train=True, seed=exp.seed, indices=indices)


def test_data(exp: Experiment) -> Any:
    from adaptsam.data import LowResDataset, open_dataset

    base = open_dataset(exp.data, exp.eval_split)
    indices = range(min(exp.eval_limit, len(base))) if exp.eval_limit else None
    return LowResDataset(base, exp.resolution, train=False, seed=exp.seed, indices=indices)


@dataclass
class ExperimentResult:
    model: SamModel
    train: TrainResult
    evaluation: EvalResult | None

    def metrics(self, exp: Experiment) -> dict[str, Any]:
        evaluation = self.evaluation.to_dict() if self.evaluation else {}
        return {**evaluation, "experiment": exp.to_dict(), "training": self.train.to_dict(),
                "backbone_pretrained": self.model.info.pretrained}


def run_experiment(exp: Experiment, out_dir: str | os.PathLike[str] | None = None, *,
                   context: DistContext | None = None, model: SamModel | None = None,
                   progress: bool = True) -> ExperimentResult:
    """Build (unless ``model`` is given), train, evaluate on the main process, and write results there."""
    context = context or DistContext()
    model = model or build_model(exp)
    train_set = training_data(exp)
    train_config = replace(exp.train, progress=exp.train.progress and progress)
    trained = fit(model, train_set, train_config, out_dir=out_dir if model.adapter is not None else None,
                  context=context)
    evaluation = None
    if context.is_main:
        evaluation = evaluate(model, test_data(exp), prompt=exp.prompt, progress=progress)
    result = ExperimentResult(model, trained, evaluation)
    if out_dir is not None and context.is_main:
        written_by = {"rank": context.rank, "world_size": context.world_size}
        write_json(Path(out_dir) / "metrics.json", {**result.metrics(exp), "written_by": written_by})
    barrier(context)
    return result


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Atomic JSON write: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path
