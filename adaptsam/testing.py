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
