"""One experiment = backbone × adapter × policy × R × dataset × shots × seed × training budget.

``adaptsam train`` runs one; every bench cell is one. The experiment builds the model, the (k-shot)
training set and the test set, trains, evaluates at R, and (on the main process) writes the adapter file
and ``metrics.json``.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from adaptsam.api import DEFAULT_POLICY
from adaptsam.engine.distributed import DistContext, barrier
from adaptsam.engine.evaluate import EvalResult, evaluate
from adaptsam.engine.train import TrainResult, fit
from adaptsam.errors import ConfigError
from adaptsam.model import SamModel
from adaptsam.train_config import LossConfig, TrainConfig, check_int, check_prompt_mode


@dataclass(frozen=True)
class Experiment:
    backbone: str = "lite_medsam"
    adapter: str = "frozen"
    adapter_cfg: dict[str, Any] = field(default_factory=dict)
    policy: str = DEFAULT_POLICY
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
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N: where the model is built and runs
    precision: str = "auto"  # autocast for evaluation (training: train.bf16): auto = bf16 on CUDA, fp32 on CPU

    def __post_init__(self) -> None:
        """Every value is checked here, before anything is built: a bad flag or YAML value is one ConfigError."""
        for name in ("backbone", "adapter", "policy", "data", "eval_split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"Expected {name} to be a non-empty name, got {value!r}.")
        for name in ("adapter_cfg", "policy_cfg"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"Expected {name} to be a mapping of options (e.g. {{'rank': 8}}), got "
                                  f"{getattr(self, name)!r}.")
        check_int("resolution", self.resolution, 1, hint="the input side R in pixels, e.g. 128")
        if self.shots is not None:
            check_int("shots", self.shots, 1, hint="training images per class; leave it out for the whole split")
        if self.eval_limit is not None:
            check_int("eval_limit", self.eval_limit, 1, hint="the number of test images to score")
        check_int("seed", self.seed, 0)
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise ConfigError(f"Expected checkpoint to be a file path, got {self.checkpoint!r}.")
        if not isinstance(self.pretrained, bool):
            raise ConfigError(f"Expected pretrained to be true or false, got {self.pretrained!r}.")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"Expected train to be a mapping of training options, got {self.train!r}.")
        check_prompt_mode(self.prompt)
        from adaptsam.devices import check_device_option, resolve_precision

        check_device_option(self.device)
        resolve_precision(self.precision, "cpu")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Experiment:
        """From YAML/JSON-like values; ``train`` may be a dict (with ``loss`` a dict too).

        Unknown keys (with close matches) and bad values are a :class:`ConfigError`, never a TypeError.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"Expected a mapping of experiment options, got {type(values).__name__}.")
        values = dict(values)
        _refuse_unknown("experiment", values, {f.name for f in fields(cls)})
        train = values.get("train")
        if train is None:
            values.pop("train", None)
        elif isinstance(train, Mapping):
            train = dict(train)
            _refuse_unknown("train", train, {f.name for f in fields(TrainConfig)})
            loss = train.get("loss")
            if isinstance(loss, Mapping):
                _refuse_unknown("train.loss", loss, {f.name for f in fields(LossConfig)})
                train["loss"] = _construct(LossConfig, "train.loss", loss)
            elif loss is not None and not isinstance(loss, LossConfig):
                raise ConfigError(f"Expected train.loss to be a mapping of loss weights, got {loss!r}.")
            values["train"] = _construct(TrainConfig, "train", train)
        elif not isinstance(train, TrainConfig):
            raise ConfigError(f"Expected train to be a mapping of training options (e.g. steps: 100), got {train!r}.")
        return _construct(cls, "experiment", values)


def _refuse_unknown(what: str, values: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(str(k) for k in set(values) - known)
    if unknown:
        close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        hints = "; ".join(f"{k!r}: did you mean {c[0]!r}?" for k, c in close.items() if c)
        raise ConfigError(f"Unknown {what} keys {unknown}{' (' + hints + ')' if hints else ''}; expected some of "
                          f"{sorted(known)}.")


def _construct(cls: type, what: str, values: Mapping[str, Any]) -> Any:
    """``cls(**values)``; a value of the wrong type (``'abc' < 1``) is a ConfigError too, naming ``what``."""
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Bad {what} options: {exc}") from exc


def build_model(exp: Experiment) -> SamModel:
    from adaptsam.api import create_model

    return create_model(exp.backbone, checkpoint=exp.checkpoint, pretrained=exp.pretrained, policy=exp.policy,
                        policy_cfg=exp.policy_cfg, resolution=exp.resolution, adapter=exp.adapter,
                        adapter_cfg=exp.adapter_cfg, seed=exp.seed, device=exp.device)


def training_data(exp: Experiment, *, prompted: bool | None = None) -> Any:
    """The (k-shot) training split at R. For a prompted adapter (``prompted``; default: ask the registered
    adapter) images without any object have nothing to prompt: they are left out, counted in the dataset's
    ``skipped_images`` and said in a warning; when none is left that is a DataError naming the split."""
    from adaptsam.data import LowResDataset, k_shot_indices, open_dataset

    base = _with_classes(open_dataset(exp.data, "train"))
    indices = k_shot_indices(base, exp.shots, seed=exp.seed) if exp.shots else list(range(len(base)))
    if prompted is None:
        from adaptsam.registry import adapters

        prompted = bool(getattr(adapters.get(exp.adapter), "uses_prompts", True))
    skipped = 0
    if prompted:
        indices, skipped = _with_objects(base, indices)
    dataset = LowResDataset(base, exp.resolution, train=True, seed=exp.seed, indices=indices)
    dataset.skipped_images = skipped
    return dataset


def _with_classes(base: Any) -> Any:
    """A dataset whose classes are all "background" has nothing to prompt or score: say so, naming its labels."""
    if not base.foreground_classes:
        from adaptsam.errors import DataError

        where = getattr(base, "labels_path", None) or f"{base.name}'s class list"
        raise DataError(f"{where} defines no foreground class (classes {list(base.classes)}): nothing to prompt or "
                        f"score. Add lines such as '1 polyp' (index name) for the objects in the masks.")
    return base


def _with_objects(base: Any, indices: list[int]) -> tuple[list[int], int]:
    import warnings

    from adaptsam.data.prompts import present_classes

    kept = [i for i in indices if present_classes(base.mask_at(i), base.foreground_classes)]
    skipped = len(indices) - len(kept)
    where = f"{base.name}/{base.split}"
    if not kept:
        from adaptsam.errors import DataError

        raise DataError(f"None of the {len(indices)} training images of {where} holds an object (every mask is "
                        f"background or ignore): a prompted adapter has nothing to train on. Check the masks "
                        f"(binary masks hold 0 and 255), or the labels.txt class indices.")
    if skipped:
        warnings.warn(f"{skipped} of {len(indices)} training images of {where} hold no object; they are left out "
                      f"of prompted training.", UserWarning, stacklevel=3)
    return kept, skipped


def test_data(exp: Experiment) -> Any:
    from adaptsam.data import LowResDataset, open_dataset

    base = _with_classes(open_dataset(exp.data, exp.eval_split))
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
    from adaptsam.devices import resolve_precision

    context = context or DistContext()
    model = model or build_model(exp)
    train_set = training_data(exp, prompted=model.uses_prompts)
    precision = resolve_precision(exp.precision, model.device)
    bf16 = exp.train.bf16 if exp.train.bf16 is not None or exp.precision == "auto" else precision == "bf16"
    train_config = replace(exp.train, progress=exp.train.progress and progress, bf16=bf16)
    trained = fit(model, train_set, train_config, out_dir=out_dir if model.adapter is not None else None,
                  context=context)
    trained.skipped_images = getattr(train_set, "skipped_images", 0)
    evaluation = None
    if context.is_main:
        evaluation = evaluate(model, test_data(exp), prompt=exp.prompt, progress=progress, precision=precision)
    result = ExperimentResult(model, trained, evaluation)
    if out_dir is not None and context.is_main:
        written_by = {"rank": context.rank, "world_size": context.world_size}
        ran_on = {"device": str(model.device), "precision": precision,
                  "train_precision": resolve_precision(bf16, model.device)}
        write_json(Path(out_dir) / "metrics.json", {**result.metrics(exp), **ran_on, "written_by": written_by})
    barrier(context)
    return result


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Atomic JSON write: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path
