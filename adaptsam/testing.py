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
