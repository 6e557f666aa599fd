"""MobileSAM's TinyViT backbone (``mobile_sam``): ``vit_t`` and the tiny ``tinyvit_test``.

Official weights: ``mobile_sam.pt`` (39 MB) from
https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt. Put it in
``$ADAPTSAM_HOME/checkpoints/`` (default ``~/.cache/adaptsam/checkpoints``) or pass ``checkpoint=``.
MobileSAM's TinyViT carries an ImageNet classifier head (``norm_head``, ``head``: 321,640 parameters) that
SAM never uses; it is not built here, its checkpoint keys are skipped, and ``info.dropped_parameters``
reports it so parameter counts stay honest.
"""

from __future__ import annotations

import os

from adaptsam.assets import CheckpointSpec
from adaptsam.backbones._tinyvit import TINY_DECODER, ResizableTinyViT, TinyViTConfig, build_tinyvit_sam
from adaptsam.backbones._upstream import mobile_sam_tiny_vit
from adaptsam.model import InputRecipe, SamModel
from adaptsam.registry import for_tests

_upstream = mobile_sam_tiny_vit()

VIT_T_WEIGHTS = CheckpointSpec(
    filename="mobile_sam.pt",
    url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
    sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
)
CLASSIFIER_KEYS = ("image_encoder.norm_head.", "image_encoder.head.")
PATCH_STRIDE = 16  # two stride-2 convolutions in the patch embedding, then two stride-2 patch mergings


class MobileSamTinyViT(ResizableTinyViT, _upstream.TinyViT):
    """MobileSAM's TinyViT, resizable, without the unused classifier head."""

    def __init__(self, **kwargs):
        super().__init__(num_classes=1000, **kwargs)
        self.dropped_parameters = sum(p.numel() for m in (self.norm_head, self.head) for p in m.parameters())
        del self.norm_head, self.head


def build_mobile_sam(cfg: TinyViTConfig, *, name: str, spec: CheckpointSpec | None,
                     checkpoint: str | os.PathLike[str] | None, pretrained: bool, download: bool) -> SamModel:
    encoder = MobileSamTinyViT(**cfg.encoder_kwargs())
    return build_tinyvit_sam(encoder, cfg, name=name, family="mobile_sam", patch_stride=PATCH_STRIDE,
                             recipe=InputRecipe("sam"), spec=spec, checkpoint=checkpoint, pretrained=pretrained,
                             download=download, ignore_unexpected=CLASSIFIER_KEYS,
                             dropped_parameters=encoder.dropped_parameters)


VIT_T = TinyViTConfig(img_size=1024)
TINYVIT_TEST = TinyViTConfig(img_size=256, embed_dims=(16, 32, 48, 320), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                             window_sizes=(4, 4, 4, 4), mlp_ratio=1.0, mbconv_expand_ratio=2.0, decoder=TINY_DECODER)


def vit_t(checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
          download: bool = False) -> SamModel:
    """MobileSAM ViT-T (TinyViT-5M encoder + SAM decoder): 9.8 M parameters, design size 1024."""
    return build_mobile_sam(VIT_T, name="vit_t", spec=VIT_T_WEIGHTS, checkpoint=checkpoint, pretrained=pretrained,
                            download=download)


@for_tests
def tinyvit_test(checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
                 download: bool = False) -> SamModel:
    """Tiny MobileSAM-style TinyViT for tests (1 block per stage, design size 256); random weights."""
    return build_mobile_sam(TINYVIT_TEST, name="tinyvit_test", spec=None, checkpoint=checkpoint,
                            pretrained=pretrained, download=download)
