"""SAM ViT backbones from ``segment-anything``: ``vit_b`` and the tiny ``vit_test``.

Official weights: ``sam_vit_b_01ec64.pth`` (375 MB) from
https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth, sha256 ec2df627…b8c912. Put it in
``$ADAPTSAM_HOME/checkpoints/`` (default ``~/.cache/adaptsam/checkpoints``) or pass ``checkpoint=``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from adaptsam.assets import CheckpointSpec
from adaptsam.backbones._upstream import segment_anything_modeling
from adaptsam.backbones.build import (
    DecoderConfig,
    build_mask_decoder,
    build_prompt_encoder,
    config_dict,
    finish_backbone,
)
from adaptsam.model import AttentionSite, BackboneInfo, FusedSegment, InputRecipe, PromptStage, SamModel
from adaptsam.registry import for_tests

_modeling = segment_anything_modeling()

VIT_B_WEIGHTS = CheckpointSpec(
    filename="sam_vit_b_01ec64.pth",
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
)


@dataclass(frozen=True)
class SamViTConfig:
    """Every number of a SAM ViT (defaults: ViT-B as published)."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size ({self.img_size}) must be a multiple of patch_size ({self.patch_size}).")
        if any(not 0 <= i < self.depth for i in self.global_attn_indexes):
            raise ValueError(f"global_attn_indexes {self.global_attn_indexes} must lie in [0, depth={self.depth}).")


class SamViTEncoder(_modeling.ImageEncoderViT):
    """segment-anything's ``ImageEncoderViT`` that can run at another input size.

    Upstream adds a 64×64 absolute position embedding, so only 1024-pixel inputs work. ``set_input_size``
    resamples it bicubically to the new token grid (the usual ViT recipe) and can give the windowed blocks
    a window that tiles the new grid exactly, so small grids aren't padded to 14-multiples.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.design_window_size = max(blk.window_size for blk in self.blocks)

    @property
    def patch_size(self) -> int:
        return int(self.patch_embed.proj.kernel_size[0])

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def set_input_size(self, img_size: int, *, match_window: bool = False) -> None:
        """Run at ``img_size``; ``match_window`` picks the window that tiles the new grid without padding."""
        grid = img_size // self.patch_size
        if self.pos_embed is not None and self.pos_embed.shape[1] != grid:
            with torch.no_grad():
                resized = F.interpolate(self.pos_embed.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic",
                                        align_corners=False).permute(0, 2, 3, 1).contiguous()
            self.pos_embed = nn.Parameter(resized, requires_grad=self.pos_embed.requires_grad)
        window = matched_window(grid, self.design_window_size) if match_window else self.design_window_size
        for blk in self.blocks:
            if blk.window_size > 0:
                blk.window_size = window
        self.img_size = img_size


    def attention_sites(self) -> list[AttentionSite]:
        sites = []
        for blk in self.blocks:
            dim = blk.attn.qkv.in_features
            segments = {part: FusedSegment(1, 3 * dim, i * dim, dim) for i, part in enumerate("qkv")}
            sites.append(AttentionSite(blk.attn.qkv, blk.attn.proj, segments, (blk.mlp.lin1, blk.mlp.lin2)))
        return sites

    def prompt_stages(self) -> list[PromptStage]:
        dim = self.patch_embed.proj.out_channels
        return [PromptStage(dim, self.patch_size, self.patch_embed, list(self.blocks), "bhwc")]


def matched_window(grid: int, design_window: int) -> int:
    """The divisor of ``grid`` closest to ``design_window`` (ties: the larger): windows tile without padding."""
    divisors = [d for d in range(1, grid + 1) if grid % d == 0]
    return min(divisors, key=lambda d: (abs(d - design_window), -d))


def build_sam_vit(cfg: SamViTConfig, *, name: str, spec: CheckpointSpec | None,
                  checkpoint: str | os.PathLike[str] | None, pretrained: bool, download: bool) -> SamModel:
    """Assemble a SAM ViT from explicit numbers (like segment-anything's ``_build_sam``) and load weights."""
    encoder = SamViTEncoder(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, out_chans=cfg.decoder.prompt_embed_dim, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, global_attn_indexes=cfg.global_attn_indexes,
        window_size=cfg.window_size,
    )
    info = BackboneInfo(name=name, family="sam_vit", design_size=cfg.img_size, patch_stride=cfg.patch_size,
                        input_recipe=InputRecipe("sam"), config=config_dict(cfg))
    model = SamModel(encoder,
                     build_prompt_encoder(cfg.decoder, design_size=cfg.img_size, patch_stride=cfg.patch_size),
                     build_mask_decoder(cfg.decoder), info)
    return finish_backbone(model, spec, checkpoint=checkpoint, pretrained=pretrained, download=download)


VIT_B = SamViTConfig()
VIT_TEST = SamViTConfig(
    img_size=256, patch_size=16, embed_dim=64, depth=3, num_heads=2, window_size=8, global_attn_indexes=(2,),
    decoder=DecoderConfig(prompt_embed_dim=32, mask_in_chans=4, transformer_depth=1, transformer_mlp_dim=64,
                          transformer_heads=2, iou_head_depth=2, iou_head_hidden_dim=32),
)


def vit_b(checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
          download: bool = False) -> SamModel:
    """SAM ViT-B (segment-anything): 93.7 M parameters, design size 1024, patch 16."""
    return build_sam_vit(VIT_B, name="vit_b", spec=VIT_B_WEIGHTS, checkpoint=checkpoint, pretrained=pretrained,
                         download=download)


@for_tests
def vit_test(checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
             download: bool = False) -> SamModel:
    """Tiny SAM ViT for tests (3 blocks, width 64, design size 256); random weights unless given a file."""
    return build_sam_vit(VIT_TEST, name="vit_test", spec=None, checkpoint=checkpoint, pretrained=pretrained,
                         download=download)
