"""Public test helpers: contract checks that built-ins and third-party plugins both run.

A plugin's own test suite imports these, so a plugin is held to exactly the rules adaptsam's built-ins are::

    from adaptsam.testing import check_backbone
    def test_my_backbone():
        check_backbone("my_backbone")

They use only tiny inputs and are deterministic. ``make_distribution`` writes an installable-looking
distribution (dist-info + module) into a folder, which is how the registry's plugin handling is tested
without installing anything.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from adaptsam.model import SamModel


def make_distribution(folder: str | os.PathLike[str], name: str, entry_points: Mapping[str, Mapping[str, str]],
                      modules: Mapping[str, str] | None = None, version: str = "0.1.0") -> Path:
    """Write ``<name>-<version>.dist-info`` (METADATA, entry_points.txt) and module files into ``folder``.

    Put ``folder`` on ``sys.path`` and call ``adaptsam.registry.refresh_all()``: the entry points are then
    discovered exactly like an installed plugin's. ``entry_points`` maps group → {name: "module:attr"};
    ``modules`` maps a module file name (``"my_plugin.py"``) to its source.
    """
    folder = Path(folder)
    dist_info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{ep_name} = {target}" for ep_name, target in eps.items())
        lines.append("")
    (dist_info / "entry_points.txt").write_text("\n".join(lines))
    for filename, source in (modules or {}).items():
        (folder / filename).write_text(textwrap.dedent(source))
    return dist_info


def stale_attention_caches(model: torch.nn.Module) -> list[str]:
    """Names of TinyViT attention modules whose cached bias ``ab`` differs from ``attention_biases``.

    In eval mode TinyViT uses a cached copy of its attention biases; if that copy is stale the model
    silently runs with wrong weights. Empty list = every cache is fresh (or the model has none).
    """
    stale = []
    for name, module in model.named_modules():
        if hasattr(module, "attention_biases") and not module.training and hasattr(module, "ab"):
            expected = module.attention_biases[:, module.attention_bias_idxs]
            if not torch.equal(module.ab, expected):
                stale.append(name)
    return stale


def random_batch(model: SamModel, batch: int = 2, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] at the model's resolution and one box per image inside the image."""
    generator = torch.Generator().manual_seed(seed)
    r = model.resolution
    images = torch.rand(batch, 3, r, r, generator=generator)
    low = torch.randint(0, r // 2, (batch, 2), generator=generator).float()
    size = torch.randint(r // 8, r // 2, (batch, 2), generator=generator).float()
    boxes = torch.cat([low, (low + size).clamp(max=r - 1)], dim=1)
    return images, boxes


def check_backbone(name: str, resolutions: tuple[int, ...] = (64, 128), policies: tuple[str, ...] = ("native",
                   "upsample")) -> None:
    """A registered backbone builds a SamModel, runs under each policy at each resolution, counts add up."""
    from adaptsam.api import create_model
    from adaptsam.params import count_parameters

    for policy in policies:
        for resolution in resolutions:
            model = create_model(name, pretrained=False, policy=policy, resolution=resolution)
            assert isinstance(model, SamModel), f"{name} built {type(model).__name__}, expected SamModel"
            assert model.patch_stride > 0 and model.design_size >= resolution
            images, boxes = random_batch(model)
            with torch.no_grad():
                out = model(images, boxes=boxes)
            assert out.logits.shape == (2, 1, resolution, resolution), (name, policy, resolution, out.logits.shape)
            assert out.iou.shape == (2, 1)
            assert torch.isfinite(out.logits).all(), f"{name} gave non-finite logits under {policy} at {resolution}"
            counts = count_parameters(model)
            assert counts.total == sum(p.numel() for p in model.parameters())
            assert not stale_attention_caches(model)


def _prompt_free_setup(model: SamModel, resolution: int) -> None:
    """Give a prompt-free adapter (class prompts) its data-dependent setup from the synthetic 2-class set."""
    from adaptsam.data import LowResDataset, open_dataset

    data = LowResDataset(open_dataset("synthetic_2class", "train", n=4, size=resolution), resolution)
    model.adapter.setup(model, data)


def _step_loss(model: SamModel, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    out = model(images, boxes=boxes) if model.uses_prompts else model(images)
    target = torch.zeros_like(out.logits)
    r = model.resolution
    target[..., r // 4: r // 2, r // 4: r // 2] = 1.0
    return torch.nn.functional.binary_cross_entropy_with_logits(out.logits, target) + out.iou.square().mean()


def check_adapter(name: str, backbone: str = "vit_test", *, adapter_cfg: Mapping | None = None,
                  policies: tuple[str, ...] = ("native", "upsample"), resolution: int = 64,
                  workdir: str | os.PathLike[str] | None = None) -> None:
    """The adapter contract, on a tiny backbone under each policy:

    * only the tensors the adapter declares (``trainable_state_dict``) change in an optimiser step, and
      something does change when anything is trainable; the loss is finite;
    * ``count_parameters`` agrees with the parameters' ``requires_grad``;
    * save → load rebuilds the same model: outputs are identical;
    * an adapter that supports merging gives the same outputs merged and unmerged, and unmerging restores
      the base weights.
    """
    import tempfile

    from adaptsam.api import create_model, load_adapter, merge_adapter, save_adapter, unmerge_adapter
    from adaptsam.params import count_parameters

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for policy in policies:
            model = create_model(backbone, policy=policy, resolution=resolution, adapter=name,
                                 adapter_cfg=adapter_cfg)
            adapter = model.adapter
            if not adapter.uses_prompts:
                _prompt_free_setup(model, resolution)
            declared = set(adapter.trainable_state_dict(model))
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            assert trainable <= declared, f"{name}: trainable parameters not declared: {sorted(trainable - declared)}"
            counts = count_parameters(model)
            assert counts.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
            assert counts.trainable + counts.frozen == counts.total

            images, boxes = random_batch(model)
            before = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.train()
            loss = _step_loss(model, images, boxes)
            assert torch.isfinite(loss), f"{name} under {policy}: non-finite loss {loss}"
            if trainable:
                optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                                              weight_decay=0.0)
                loss.backward()
                optimiser.step()
            after = model.state_dict()
            changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
            undeclared = sorted(changed - declared)
            assert not undeclared, f"{name} under {policy} changed undeclared tensors: {undeclared}"
            assert bool(changed) == bool(trainable), f"{name} under {policy}: trainable={bool(trainable)} but " \
                                                     f"changed={sorted(changed)[:3]}"
            model.eval()

            path = os.path.join(tmp, f"{name}-{policy}.safetensors")
            save_adapter(model, path)
            reloaded = load_adapter(path).eval()
            with torch.no_grad():
                expected = model(images, boxes=boxes) if model.uses_prompts else model(images)
                got = reloaded(images, boxes=boxes) if reloaded.uses_prompts else reloaded(images)
            assert torch.equal(expected.logits, got.logits), f"{name}: save/load changed the outputs"
            assert os.path.getsize(path) >= counts.stored_bytes

            if adapter.supports_merge:
                weights = {k: v.clone() for k, v in model.state_dict().items()}
                merge_adapter(model)
                with torch.no_grad():
                    merged = model(images, boxes=boxes) if model.uses_prompts else model(images)
                unmerge_adapter(model)
                scale = expected.logits.abs().max().clamp_min(1e-6)
                assert ((merged.logits - expected.logits).abs().max() / scale) < 1e-4, f"{name}: merge changed outputs"
                for key, value in model.state_dict().items():
                    assert (value - weights[key]).abs().max() < 1e-6, f"{name}: unmerge did not restore {key}"


def _foreground_box(model: SamModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1×3×R×R image, 1 inside an off-centre rectangle and 0 elsewhere, and that rectangle as a 1×1×4 box
    (xyxy, inclusive pixels): the content a prompt must keep pointing at through a policy."""
    r = model.resolution
    x0, y0, x1, y1 = r // 8 + 1, r // 4, r // 2 + r // 8, (3 * r) // 4 - 2
    image = torch.zeros(1, 3, r, r)
    image[..., y0:y1 + 1, x0:x1 + 1] = 1.0
    return image, torch.tensor([[[float(x0), float(y0), float(x1), float(y1)]]])


def _extent(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """xyxy of the True pixels of an H×W mask (inclusive)."""
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    assert len(rows) and len(cols), "expected some content, got an empty mask"
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def check_policy(name: str, backbone: str = "vit_test", *, policy_cfg: Mapping | None = None,
                 resolutions: tuple[int, ...] = (64, 96)) -> None:
    """The resolution-policy contract, on a tiny backbone at each resolution:

    * the registered class is a frozen ``ResolutionPolicy`` dataclass whose ``name`` is the registered name,
      and its options survive a JSON round trip (adapter files store them as JSON and rebuild the policy from
      ``to_dict()``); an unknown option is refused with a ``ConfigError``;
    * ``prepare`` refuses resolutions outside the backbone's range (non-integers included) with an adaptsam
      error (``IncompatibleError`` or ``ConfigError``) and a message, and a second, different policy on the
      same model;
    * the image the encoder gets and the prompts the prompt encoder gets stay on the same content: an R×R
      image holding a rectangle and that rectangle's box (and a point inside it) map so that the mapped box
      matches the rectangle in the encoder's input to within a pixel and the mapped point lies inside it;
    * decoder-resolution logits come back at R×R on the same content: logits made from the mapped image are
      right everywhere except within one decoder cell of the rectangle's edge;
    * a full forward gives finite B×1×R×R logits, and the encoder's grid is what the prompt encoder expects.
    """
    import dataclasses
    import json

    import torch.nn.functional as F

    from adaptsam import registry
    from adaptsam.api import build_policy, create_model
    from adaptsam.errors import AdaptsamError, ConfigError, IncompatibleError
    from adaptsam.model import Prompts
    from adaptsam.policies.base import ResolutionPolicy

    cls = registry.policies.get(name)
    assert isinstance(cls, type) and issubclass(cls, ResolutionPolicy), \
        f"policy {name!r} is {cls!r}, expected a subclass of adaptsam.policies.base.ResolutionPolicy"
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, \
        f"policy {name!r} ({cls.__name__}) must be a frozen dataclass (@dataclass(frozen=True))"
    assert cls.name == name, f"policy registered as {name!r} has name {cls.name!r}: adapter files record the name"
    policy = build_policy(name, policy_cfg)
    stored = json.loads(json.dumps(policy.to_dict()))  # what an adapter file keeps
    assert stored.pop("name") == name
    assert build_policy(name, stored) == policy, f"{name}: options {stored} do not rebuild {policy!r} (JSON round " \
                                                 f"trip: use JSON-able fields, and convert lists in __post_init__)"
    try:
        build_policy(name, {"no_such_option_for_check_policy": 1})
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{name}: an unknown option was accepted; expected a ConfigError")

    for resolution in resolutions:
        model = create_model(backbone, pretrained=False, policy=build_policy(name, policy_cfg), resolution=resolution)
        assert model.policy == policy and model.resolution == resolution
        try:
            build_policy("upsample" if name != "upsample" else "native").prepare(model, resolution)
        except AdaptsamError:
            pass
        else:
            raise AssertionError(f"{name}: a second policy prepared an already prepared model")

        image, box = _foreground_box(model)
        mapped = policy.images_to_model(image, model)
        assert mapped.dim() == 4 and mapped.shape[:2] == (1, 3), f"{name}: images_to_model gave {tuple(mapped.shape)}"
        inside = mapped[0, 0] > 0.5
        x0, y0, x1, y1 = _extent(inside)
        centre = box[..., :2].add(box[..., 2:]).div(2).floor().reshape(1, 1, 1, 2)
        prompts = policy.prompts_to_model(Prompts(boxes=box.clone(), point_coords=centre.clone(),
                                                  point_labels=torch.ones(1, 1, 1)), model)
        got = prompts.boxes.reshape(4).tolist()
        assert all(abs(a - b) <= 1.0 for a, b in zip(got, (x0, y0, x1, y1))), \
            f"{name} at R={resolution}: box {box.reshape(4).tolist()} maps to {got}, but the image maps that " \
            f"rectangle to {[x0, y0, x1, y1]} in the encoder's input (prompts and images must map alike)"
        px, py = prompts.point_coords.reshape(2).round().long().tolist()
        assert 0 <= py < inside.shape[0] and 0 <= px < inside.shape[1] and inside[py, px], \
            f"{name} at R={resolution}: point {centre.reshape(2).tolist()} maps to {(px, py)}, outside its rectangle"

        images, boxes = random_batch(model)
        with torch.no_grad():
            embeddings = model.encode(images)
            assert tuple(embeddings.shape[-2:]) == model.embedding_grid, \
                f"{name}: encoder grid {tuple(embeddings.shape[-2:])} but prompt encoder grid {model.embedding_grid}"
            out = model.decode(embeddings, Prompts.from_user(2, boxes))
        r = resolution
        assert out.logits.shape == (2, 1, r, r), f"{name} at R={r}: logits {tuple(out.logits.shape)}"
        assert torch.isfinite(out.logits).all(), f"{name} at R={r}: non-finite logits"
        low_size = tuple(out.low_res_logits.shape[-2:])
        low = F.interpolate(mapped[:, :1], size=low_size, mode="area") * 2 - 1  # > 0 inside the rectangle
        back = policy.logits_to_output(low, model)
        assert back.shape == (1, 1, r, r), f"{name}: logits_to_output gave {tuple(back.shape)}, expected 1×1×{r}×{r}"
        truth = image[:, :1] > 0.5
        cell = -(-r // min(low_size)) + 1  # output pixels per decoder cell, rounded up, plus one
        edge = F.max_pool2d(truth.float(), 2 * cell + 1, 1, cell) != -F.max_pool2d(-truth.float(), 2 * cell + 1, 1,
                                                                                   cell)
        wrong = ((back > 0) != truth) & ~edge
        assert not wrong.any(), f"{name} at R={r}: {int(wrong.sum())} output pixels away from the rectangle's edge " \
                                f"are on the wrong side after logits_to_output (the logits map back elsewhere)"

    build = registry.backbones.get(backbone)
    for bad in (16, 64.0, build(pretrained=False).design_size + 16):
        try:
            policy.prepare(build(pretrained=False), bad)
        except (IncompatibleError, ConfigError) as exc:
            assert str(exc), f"{name}: refused R={bad!r} without a message"
        else:
            raise AssertionError(f"{name}: prepared {backbone} at R={bad!r}; expected an IncompatibleError or "
                                 f"ConfigError saying which R work")


def check_dataset(name: str, splits: tuple[str, ...] = ("train", "test"), *, options: Mapping | None = None,
                  limit: int = 3, resolution: int = 32) -> None:
    """The dataset contract, on the first ``limit`` samples of each split of a registered dataset:

    * the factory ``open(split, **options)`` returns a ``SegmentationDataset`` of that split with unique string
      ids, ``len`` equal to the number of ids, and class names (at least one scored class); an unknown split
      is refused with a ``DataError``;
    * each sample is ``Sample(image, mask, meta)``: image uint8 H×W×3, mask int64 H×W of the same size holding
      only class indices ``0..len(classes)-1`` or 255 (ignore), ``meta`` with ``id`` (its own id),
      ``image_path`` and ``mask_path``; negative indices work like a list's and out-of-range ones raise
      ``IndexError``;
    * ``mask_at(i)`` equals ``self[i].mask``, and reading again, or from a second open, gives the same ids and
      identical arrays (deterministic);
    * the low-resolution pipeline takes it: ``LowResDataset(dataset, resolution)[0]`` is an R×R sample.

    Pass ``options`` (e.g. ``{"root": path}``) for factories that need them.
    """
    from adaptsam import registry
    from adaptsam.data.lowres import LowResDataset
    from adaptsam.data.types import IGNORE_INDEX, Sample, SegmentationDataset
    from adaptsam.errors import DataError

    factory = registry.datasets.get(name)
    options = dict(options or {})
    for split in splits:
        data = factory(split, **options)
        where = f"dataset {name!r} split {split!r}"
        assert isinstance(data, SegmentationDataset), \
            f"{where}: the factory returned {type(data).__name__}, expected an adaptsam.data.SegmentationDataset"
        assert data.split == split, f"{where}: the dataset says split {data.split!r}"
        assert isinstance(data.ids, list) and all(isinstance(i, str) and i for i in data.ids), \
            f"{where}: ids must be a list of non-empty strings"
        assert len(data) == len(data.ids) > 0, f"{where}: len {len(data)} but {len(data.ids)} ids"
        assert len(set(data.ids)) == len(data.ids), f"{where}: ids are not unique"
        assert isinstance(data.classes, tuple) and data.classes and all(isinstance(c, str) for c in data.classes), \
            f"{where}: classes must be a non-empty tuple of names indexed by mask value, got {data.classes!r}"
        assert len(data.classes) < IGNORE_INDEX and data.foreground_classes, \
            f"{where}: classes {data.classes} leave nothing to score (every class is called background)"
        again = factory(split, **options)
        assert again.ids == data.ids and again.classes == data.classes, f"{where}: a second open differs"

        n = min(limit, len(data))
        for i in range(n):
            sample = data[i]
            assert isinstance(sample, Sample), f"{where}[{i}]: got {type(sample).__name__}, expected Sample"
            image, mask, meta = sample
            assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and \
                image.shape[2] == 3, f"{where}[{i}]: image must be uint8 H×W×3, got {_describe(image)}"
            assert isinstance(mask, np.ndarray) and mask.dtype == np.int64 and mask.shape == image.shape[:2], \
                f"{where}[{i}]: mask must be int64 H×W like its image {image.shape[:2]}, got {_describe(mask)}"
            values = set(np.unique(mask).tolist())
            bad = sorted(values - set(range(len(data.classes))) - {IGNORE_INDEX})
            assert not bad, f"{where}[{i}]: mask values {bad} are neither classes 0..{len(data.classes) - 1} " \
                            f"nor {IGNORE_INDEX} (ignore)"
            assert isinstance(meta, dict) and meta.get("id") == data.ids[i], \
                f"{where}[{i}]: meta['id'] must be the sample's id {data.ids[i]!r}, got {meta!r}"
            assert {"image_path", "mask_path"} <= set(meta), f"{where}[{i}]: meta lacks image_path/mask_path"
            assert np.array_equal(data.mask_at(i), mask), f"{where}[{i}]: mask_at differs from the sample's mask"
            other = again[i]
            assert np.array_equal(other.image, image) and np.array_equal(other.mask, mask), \
                f"{where}[{i}]: reading the sample again gives different arrays (not deterministic)"
        assert np.array_equal(data[-n].mask, data[len(data) - n].mask), f"{where}: negative index is not from the end"
        try:
            data[len(data)]
        except IndexError:
            pass
        else:
            raise AssertionError(f"{where}: index {len(data)} (== len) did not raise IndexError")
        low = LowResDataset(data, resolution)[0]
        assert tuple(low["image"].shape) == (3, resolution, resolution), \
            f"{where}: LowResDataset gave an image of {tuple(low['image'].shape)}"
        assert tuple(low["mask"].shape) == (resolution, resolution)
    try:
        factory("no_such_split_for_check_dataset", **options)
    except DataError:
        pass
    else:
        raise AssertionError(f"dataset {name!r}: an unknown split was accepted; expected a DataError naming the "
                             f"splits there are")


def _describe(array: object) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.dtype} array of shape {array.shape}"
    return type(array).__name__
