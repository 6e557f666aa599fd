"""What a bench runs: a grid of cells, from flags, a YAML file or a preset.

A **cell** is backbone × adapter (+config) × policy (+config) × R × dataset × shots × seed × training budget.
Its identity is a hash of its canonical JSON, so a resumed bench recognises finished cells, and two
benches that share cells share their results. ``all`` expands to everything registered, plugins included.
``exclude`` drops combinations by field values (e.g. LoRA under upsample in the quick preset, whose backward
passes through a 16× larger encoder input).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from adaptsam import registry
from adaptsam.errors import ConfigError
from adaptsam.train_config import PROMPT_MODES, TrainConfig, check_int

SPEC_VERSION = 2  # 2: each part's distribution and version are in the cell (``Cell.parts``)
PROMPTS = (*PROMPT_MODES, "none")  # "none": prompt-free adapters (class prompts, PerSAM, prototypes)
MIN_RESOLUTION = 32  # the smallest R any policy accepts (policies.base.MIN_RESOLUTION)


@dataclass(frozen=True)
class AdapterChoice:
    """An adapter by name with its options; ``label`` tells variants apart in tables (e.g. lora-r16)."""

    name: str
    cfg: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or (self.name if not self.cfg else
                              f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(self.cfg.items()))})")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How a cell trains and is scored: the fields a grid gives every one of its cells.

    Training defaults are :class:`~adaptsam.train_config.TrainConfig`'s (their one home), so ``adaptsam train``
    and a bench cell given the same flags train the same way.
    """

    steps: int = TrainConfig.steps
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    adapter_lr: float = TrainConfig.adapter_lr
    prompt: str = TrainConfig.prompt  # or "none" for prompt-free adapters
    eval_limit: int | None = None  # score the first N test images only
    throughput_batch: int = 4  # images per pass in the timing phase
    pretrained: bool = True  # False: random backbone weights (rows marked untrained)

    def budget(self) -> dict[str, Any]:
        """This object's budget fields, to hand to another Budget (a grid to its cells)."""
        return {f.name: getattr(self, f.name) for f in fields(Budget)}


@dataclass(frozen=True)
class Cell(Budget):
    """One benchmark measurement; everything that changes its result is in here (and in its key).

    ``parts`` names the distribution and version that provides each part (``{"adapter": "adaptsam-peft
    0.1.0", ...}``, filled by :meth:`BenchSpec.cells`): an upgraded plugin changes its cells' keys, so a
    resumed bench runs them again instead of serving results of the old code.
    """

    backbone: str
    adapter: str
    policy: str
    resolution: int
    dataset: str
    seed: int = 0
    shots: int | None = None
    adapter_cfg: Mapping[str, Any] = field(default_factory=dict)
    adapter_label: str = ""
    policy_cfg: Mapping[str, Any] = field(default_factory=dict)
    parts: Mapping[str, str] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("adapter_label")  # presentation only
        values["adapter_cfg"] = dict(sorted(dict(self.adapter_cfg).items()))
        values["policy_cfg"] = dict(sorted(dict(self.policy_cfg).items()))
        values["parts"] = dict(sorted(dict(self.parts).items()))
        return {"spec_version": SPEC_VERSION, **values}

    @property
    def key(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def seed_invariant(self) -> bool:
        """No seed can change this cell's result (its adapter declares ``trains_nothing``): run once, serve all."""
        return bool(getattr(registry.adapters.get(self.adapter), "trains_nothing", False))

    @property
    def adapter_display(self) -> str:
        return AdapterChoice(self.adapter, self.adapter_cfg, self.adapter_label).display

    @property
    def label(self) -> str:
        shots = f"/{self.shots}-shot" if self.shots else ""
        return (f"{self.backbone}/{self.adapter_display}/{self.policy}/R{self.resolution}/{self.dataset}{shots}"
                f"/seed{self.seed}")

    def experiment(self, device: str = "auto", precision: str = "auto") -> Any:
        """This cell as an experiment run on ``device`` at ``precision`` (how it runs, not part of its key)."""
        from adaptsam.engine.experiment import Experiment

        prompt = self.prompt if self.prompt in PROMPT_MODES else TrainConfig.prompt  # "none": a prompt-free head
        train = TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, adapter_lr=self.adapter_lr,
                            seed=self.seed, prompt=prompt, progress=False)
        return Experiment(backbone=self.backbone, adapter=self.adapter, adapter_cfg=dict(self.adapter_cfg),
                          policy=self.policy, policy_cfg=dict(self.policy_cfg), resolution=self.resolution,
                          data=self.dataset, shots=self.shots, seed=self.seed, pretrained=self.pretrained,
                          train=train, eval_limit=self.eval_limit, prompt=prompt, device=device,
                          precision=precision)

    @classmethod
    def from_canonical(cls, values: Mapping[str, Any]) -> Cell:
        values = {k: v for k, v in values.items() if k != "spec_version"}
        return cls(**values)


@dataclass(frozen=True)
class BenchSpec(Budget):
    """A grid: the cartesian product of every list, minus ``exclude`` matches; its budget goes to every cell.

    ``require`` names plugin distributions the grid needs (``adaptsam-peft``): a bench where one is missing
    stops before any cell runs, as flake8's ``require-plugins`` does, instead of quietly running a smaller grid.
    """

    backbones: tuple[str, ...] = ("lite_medsam",)
    adapters: tuple[AdapterChoice, ...] = (AdapterChoice("frozen"), AdapterChoice("decoder"), AdapterChoice("lora"))
    policies: tuple[str, ...] = ("native", "upsample")
    resolutions: tuple[int, ...] = (64,)
    datasets: tuple[str, ...] = ("synthetic",)
    shots: tuple[int | None, ...] = (None,)
    seeds: tuple[int, ...] = (0,)
    require: tuple[str, ...] = ()
    exclude: tuple[Mapping[str, Any], ...] = ()
    name: str = "custom"
    note: str = ""
    timing_rounds: int = 5  # interleaved rounds of the timing phase over every distinct graph (not in cell keys)
    compile: bool = False  # the timing phase also times torch.compile of every graph (not in cell keys)
    # intra-op threads of the timing phase (not in cell keys). 1: per-core figures, which survive a rerun and a
    # busy core (measured, quick preset on a 2-core VM: ratios within 4.6% between two runs and 10% with one core
    # kept busy; with torch's default 2 threads 17% and 50%: small graphs' many parallel regions wait on a
    # preempted thread); 0: torch's default (every core)
    timing_threads: int = 1
    # cells the local executor runs at once, each in its own worker on cores // jobs threads (not in cell keys:
    # how cells run); speed still comes from the timing phase, which runs alone (adaptsam.bench.executors)
    jobs: int = 1
    device: str = "auto"  # where cells train, evaluate and are timed: auto (CUDA when available), cpu, cuda[:N]
    precision: str = "auto"  # autocast of training, evaluation and timing: auto = bf16 on CUDA, fp32 on CPU
    # device and precision are how a cell runs, not what it is: they are not in cell keys (a CPU run and a GPU
    # run of one cell are the same row); each result records them in its metrics

    def __post_init__(self) -> None:
        from adaptsam.devices import check_device_option, resolve_precision

        check_device_option(self.device)
        resolve_precision(self.precision, "cpu")
        registry.require_distributions(self.require)
        if self.prompt not in PROMPTS:
            raise ConfigError(f"Expected prompt in {PROMPTS}, got {self.prompt!r}.")
        for name in ("backbones", "adapters", "policies", "resolutions", "datasets", "shots", "seeds"):
            if not getattr(self, name):
                raise ConfigError(f"The bench needs at least one entry in {name}.")
        for r in self.resolutions:
            if isinstance(r, bool) or not isinstance(r, int) or r < MIN_RESOLUTION:
                raise ConfigError(f"Expected resolutions to be integers >= {MIN_RESOLUTION} (pixels, e.g. 64,128), "
                                  f"got {r!r} in {list(self.resolutions)}.")
        if isinstance(self.throughput_batch, bool) or not isinstance(self.throughput_batch, int) \
                or self.throughput_batch < 1:
            raise ConfigError(f"Expected throughput_batch to be an integer >= 1, got {self.throughput_batch!r}.")
        if isinstance(self.timing_rounds, bool) or not isinstance(self.timing_rounds, int) or self.timing_rounds < 1:
            raise ConfigError(f"Expected timing_rounds to be an integer >= 1, got {self.timing_rounds!r}.")
        if isinstance(self.timing_threads, bool) or not isinstance(self.timing_threads, int) \
                or self.timing_threads < 0:
            raise ConfigError(f"Expected timing_threads to be an integer >= 0 (0: torch's default), got "
                              f"{self.timing_threads!r}.")
        check_int("jobs", self.jobs, 1, hint="cells run at once")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"Expected compile to be true or false, got {self.compile!r}.")
        cell_fields = {f.name for f in fields(Cell)} - {"parts"}
        for rule in self.exclude:
            if not isinstance(rule, Mapping):
                raise ConfigError(f"Expected each exclude rule to be a mapping such as {{adapter: lora, policy: "
                                  f"upsample}}, got {rule!r}.")
            unknown = sorted(set(rule) - cell_fields)
            if unknown:
                raise ConfigError(f"exclude rule {dict(rule)} names unknown fields {unknown}; use cell fields such as "
                                  f"adapter, policy, resolution, backbone, dataset.")
        for cell in self.cells():  # every value checked where experiments check them, before any cell runs
            cell.experiment()

    def cells(self) -> list[Cell]:
        out = []
        for backbone, adapter, policy, resolution, dataset, shots, seed in itertools.product(
                self.backbones, self.adapters, self.policies, self.resolutions, self.datasets, self.shots, self.seeds):
            cell = Cell(backbone=backbone, adapter=adapter.name, adapter_cfg=dict(adapter.cfg),
                        adapter_label=adapter.label, policy=policy, resolution=resolution, dataset=dataset,
                        shots=shots, seed=seed, parts=part_sources(backbone, adapter.name, policy, dataset),
                        **self.budget())
            if not any(_matches(cell, rule) for rule in self.exclude):
                out.append(cell)
        return _once_per_seed_invariant(out, self.seeds[0])

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["adapters"] = [{"name": a.name, "cfg": dict(a.cfg), "label": a.label} for a in self.adapters]
        values["exclude"] = [dict(rule) for rule in self.exclude]
        return values


def part_sources(backbone: str, adapter: str, policy: str, dataset: str) -> dict[str, str]:
    """The distribution and version providing each part of a cell (``adaptsam 0.1.0``); a dataset given as a
    folder path is read by the registered ``folder`` dataset."""
    dataset_part = dataset if dataset in registry.datasets else "folder"
    named = {"backbone": backbone, "adapter": adapter, "policy": policy, "dataset": dataset_part}
    return {kind: registry.REGISTRIES[kind].entry(name).source for kind, name in named.items()}


def _once_per_seed_invariant(cells: list[Cell], first_seed: int) -> list[Cell]:
    """Cells that no seed can change (nothing trains) run once, under the grid's first seed, and serve every
    seed: three seeds of ``frozen`` would compute bit-identical results three times."""
    out, seen = [], set()
    for cell in cells:
        if cell.seed_invariant:
            cell = replace(cell, seed=first_seed)
            if cell.key in seen:
                continue
            seen.add(cell.key)
        out.append(cell)
    return out


def _matches(cell: Cell, rule: Mapping[str, Any]) -> bool:
    return all(getattr(cell, key) == value for key, value in rule.items())


def expand_names(kind: str, values: Iterable[str]) -> tuple[str, ...]:
    """``all`` → every registered name of ``kind`` but test configs (parts marked ``for_tests``); others checked."""
    reg = registry.REGISTRIES[kind]
    out: list[str] = []
    for value in values:
        if value == "all":
            out.extend(reg.names(for_tests=False))
        elif "*" in value or "?" in value:
            out.extend(reg.names(value))
        else:
            reg.entry(value)  # unknown names fail now, with suggestions, not in the middle of a grid
            out.append(value)
    return tuple(dict.fromkeys(out))


def adapter_choices(values: Iterable[Any]) -> tuple[AdapterChoice, ...]:
    """Names, ``all``, or mappings ``{name:, cfg:, label:}`` → AdapterChoice list."""
    out: list[AdapterChoice] = []
    for value in values:
        if isinstance(value, Mapping):
            known = {"name", "cfg", "label"}
            if set(value) - known or "name" not in value:
                raise ConfigError(f"Adapter entries take 'name' and optionally 'cfg' and 'label', got "
                                  f"{sorted(map(str, value))}.")
            cfg = value.get("cfg") or {}
            if not isinstance(cfg, Mapping):
                raise ConfigError(f"Expected the cfg of adapter {value['name']!r} to be a mapping of options, got "
                                  f"{cfg!r}.")
            expand_names("adapter", [value["name"]])
            _check_adapter_cfg(value["name"], cfg)
            out.append(AdapterChoice(value["name"], dict(cfg), str(value.get("label", ""))))
        else:
            out.extend(AdapterChoice(name) for name in expand_names("adapter", [value]))
    return tuple(out)


def _check_adapter_cfg(name: str, cfg: Mapping[str, Any]) -> None:
    """Bad adapter options fail before the first cell runs (the config class says what is wrong)."""
    config_class = getattr(registry.adapters.get(name), "config_class", None)
    if config_class is not None and hasattr(config_class, "from_dict"):
        config_class.from_dict(cfg)


def _ints(key: str, values: Iterable[Any], *, allow_all: bool = False) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for v in values:
        if allow_all and v in (None, "all", "none", 0, "0"):
            out.append(None)
            continue
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            out.append(int(v))
        except (TypeError, ValueError):
            extra = " or 'all'" if allow_all else ""
            raise ConfigError(f"Expected {key} to be comma-separated integers{extra} (e.g. 64,128), got {v!r} in "
                              f"{list(values)}.") from None
    return tuple(out)


def _datasets(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for value in values:
        if value == "all":
            out.extend(registry.datasets.names())
        else:
            out.append(value)
    return tuple(out)


def spec_from_mapping(values: Mapping[str, Any], base: BenchSpec | None = None) -> BenchSpec:
    """Build a spec from YAML-like values on top of ``base`` (a preset); lists may also be comma strings."""
    values = dict(values)
    known = {f.name for f in fields(BenchSpec)} | {"preset"}
    unknown = sorted(str(k) for k in set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown bench keys {unknown}; expected some of {sorted(known)}.")
    preset = values.pop("preset", None)
    spec = base or (preset_spec(preset) if preset else BenchSpec())
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        listed = _as_list(value)
        if key == "backbones":
            changes[key] = expand_names("backbone", listed)
        elif key == "policies":
            changes[key] = expand_names("policy", listed)
        elif key == "adapters":
            changes[key] = adapter_choices(listed)
        elif key == "datasets":
            changes[key] = _datasets(listed)
        elif key == "require":
            changes[key] = tuple(str(name) for name in listed)
        elif key in ("resolutions", "seeds"):
            changes[key] = _ints(key, listed)
        elif key == "shots":
            changes[key] = _ints(key, listed, allow_all=True)
        elif key == "exclude":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"Expected exclude to be a list of rules such as [{{adapter: lora}}], got "
                                  f"{value!r}.")
            changes[key] = tuple(dict(rule) if isinstance(rule, Mapping) else rule for rule in value)
        elif key in _SCALARS and isinstance(value, (list, tuple, Mapping)):
            raise ConfigError(f"Expected {key} to be one value, got {value!r}.")
        else:
            changes[key] = value
    if changes and spec.name in PRESETS and not spec.name.endswith("(modified)"):
        changes.setdefault("name", f"{spec.name} (modified)")
    if "datasets" in changes and "note" not in changes:
        changes["note"] = f"data: {', '.join(changes['datasets'])}"
    return replace(spec, **changes)


_SCALARS = ("steps", "batch_size", "lr", "adapter_lr", "prompt", "eval_limit", "throughput_batch", "pretrained",
            "name", "note", "timing_rounds", "timing_threads", "jobs", "compile", "device", "precision")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def spec_from_yaml(path: str | os.PathLike[str], base: BenchSpec | None = None) -> BenchSpec:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read bench config {path}: {type(exc).__name__}: {' '.join(str(exc).split())}. "
                          f"Expected a YAML mapping of bench options (backbones, adapters, ...).") from exc
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path} must hold a mapping of bench options (e.g. 'resolutions: [64, 128]'), got a "
                          f"{type(values).__name__}.")
    return spec_from_mapping(values, base)


# -- presets --------------------------------------------------------------------------------------------

def default_dataset() -> tuple[str, str]:
    """kvasir_seg when ``$ADAPTSAM_DATA`` holds it, else the built-in synthetic set; and a sentence saying so."""
    root = os.environ.get("ADAPTSAM_DATA")
    if root and (Path(root) / "kvasir_seg" / "splits").is_dir():
        return "kvasir_seg", f"data: kvasir_seg from $ADAPTSAM_DATA={root}"
    why = "ADAPTSAM_DATA is not set" if not root else f"no kvasir_seg under ADAPTSAM_DATA={root}"
    return "synthetic", f"data: the built-in synthetic set ({why})"


def preset_spec(name: str) -> BenchSpec:
    if name not in PRESETS:
        from adaptsam.errors import UnknownNameError

        raise UnknownNameError("bench preset", name, PRESETS)
    return PRESETS[name]()


def quick() -> BenchSpec:
    """Minutes on 2 CPU cores: real LiteMedSAM at R=64 and 128, zero-shot vs decoder-only vs LoRA + decoder vs
    SAM-Adapter, 16-shot training for 40 steps, 3 seeds, the first 30 test images (as the reference figures);
    zero-shot under both policies, native vs upsample.

    LoRA here also fine-tunes the mask decoder (the SAMed recipe): on 16 kvasir images and 40 steps, LoRA on
    the encoder alone stays at the zero-shot Dice (0.876 vs 0.876 at R=64) while LoRA + decoder gains 0.03.
    Trained adapters run at native R only, LoRA and SAM-Adapter (which train through the encoder) at R=64 only:
    on a 2-core VM three decoder-only seeds under upsample cost 200 s (the decoder then works on a 64×64
    embedding grid), and the preset took 12 minutes with them (the full preset has every combination). ``frozen``
    runs once (no seed changes it); frozen-encoder embeddings are shared on disk by every cell.
    """
    dataset, note = default_dataset()
    trained = ("decoder", "lora", "sam_adapter")
    through_encoder = ("lora", "sam_adapter")
    return BenchSpec(
        name="quick", note=note, backbones=("lite_medsam",),
        adapters=(AdapterChoice("frozen"), AdapterChoice("decoder"),
                  AdapterChoice("lora", {"train_decoder": True}, "lora+decoder"), AdapterChoice("sam_adapter")),
        policies=("native", "upsample"), resolutions=(64, 128), datasets=(dataset,), shots=(16,), seeds=(0, 1, 2),
        steps=40, batch_size=4, eval_limit=30, throughput_batch=4,
        exclude=(*({"adapter": a, "policy": "upsample"} for a in trained),
                 *({"adapter": a, "resolution": 128} for a in through_encoder),
                 {"policy": "upsample", "resolution": 128}),
    )


def full() -> BenchSpec:
    """Every real backbone × every registered adapter × both policies × R ∈ {64, 128, 256} on the three shared
    datasets, 300 steps, 3 seeds (days on a CPU; use a GPU or the Ray executor)."""
    return BenchSpec(
        name="full", note="data: kvasir_seg, weizmann_horses, camvid from $ADAPTSAM_DATA",
        backbones=expand_names("backbone", ["all"]), adapters=adapter_choices(["all"]),
        policies=("native", "upsample"), resolutions=(64, 128, 256),
        datasets=("kvasir_seg", "weizmann_horses", "camvid"), shots=(None,), seeds=(0, 1, 2), steps=300,
        batch_size=4, throughput_batch=8,
    )


def fewshot() -> BenchSpec:
    """Few-shot semantic segmentation without prompts on CamVid (11 classes): LoRA + one stored prompt per class
    vs two methods that train nothing (PerSAM, nearest class prototype), real LiteMedSAM, native R ∈ {64, 128},
    k ∈ {1, 4, 16} shots per class, prompt none, 100 steps, seeds 0-2 for the trained one (the training-free ones
    declare ``trains_nothing`` and run once), the first 60 test images; the report adds mIoU and per-class IoU.
    Run time on 2 CPU cores: not measured as a whole (30 cells). On the development machine, shared (load ~15 on
    2 cores), one prototype cell at R=128, 16 shots (152 training images pooled, 60 scored) took 14 min to pool
    and about 20 min to score; a class_prompt_lora cell at 200 steps had not finished training after 35 min.
    Expect hours; the R=128 cells dominate."""
    return BenchSpec(
        name="fewshot", note="data: camvid from $ADAPTSAM_DATA", backbones=("lite_medsam",),
        adapters=(AdapterChoice("class_prompt_lora"), AdapterChoice("persam"), AdapterChoice("prototype")),
        policies=("native",), resolutions=(64, 128), datasets=("camvid",), shots=(1, 4, 16), seeds=(0, 1, 2),
        steps=100, batch_size=4, eval_limit=60, throughput_batch=4, prompt="none",
    )


PRESETS = {"quick": quick, "full": full, "fewshot": fewshot}
