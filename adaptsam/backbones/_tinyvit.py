"""TinyViT machinery shared by MobileSAM (``vit_t``) and LiteMedSAM (``lite_medsam``).

Both upstream TinyViTs store each stage's token grid at construction and ``forward_features`` reshapes the
last stage to a hard-coded 64×64, so any input other than the design size fails ("input feature has wrong
size"). :class:`ResizableTinyViT` rescales the stored grids (parameter shapes don't depend on them, so the
checkpoint still loads strictly) and takes the final grid from the last stage instead of the constant.

Upstream pads each stage's token grid to whole windows, unmasked: at native R=128 LiteMedSAM's window-14
stage runs a 32×32 grid as 42×42 (42% padding tokens), 67% at R=64. ``match_window`` gives each stage the
divisor of its grid closest to its trained window (as ``vit_b`` does), so windows tile the grid exactly.
Attention biases are learnt per offset (|Δrow|, |Δcol|) within a window: a smaller window indexes the
trained table exactly; offsets beyond the trained window (a 16-window where 14 was trained) take the
bias of the largest trained offset on that axis (edge-extended). The parameter keeps its shape, so
checkpoints and adapter files load unchanged.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from adaptsam.assets import CheckpointSpec
from adaptsam.backbones.build import (
    DecoderConfig,
    build_mask_decoder,
    build_prompt_encoder,
    config_dict,
    finish_backbone,
)
from adaptsam.errors import IncompatibleError
from adaptsam.model import AttentionSite, BackboneInfo, FusedSegment, InputRecipe, PromptStage, SamModel

# upstream PatchMerging hard-codes stride 1 (no downsampling) into the last stage for these widths only
_LAST_STAGE_WIDTHS = (320, 448, 576)
# upstream TinyViT's neck hard-codes 256 output channels
_NECK_CHANNELS = 256


@dataclass(frozen=True)
class TinyViTConfig:
    """Every number of a TinyViT-5M SAM encoder (defaults: MobileSAM / LiteMedSAM as published)."""

    img_size: int = 1024
    embed_dims: tuple[int, int, int, int] = (64, 128, 160, 320)
    depths: tuple[int, int, int, int] = (2, 2, 6, 2)
    num_heads: tuple[int, int, int, int] = (2, 4, 5, 10)
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        lengths = {len(self.embed_dims), len(self.depths), len(self.num_heads), len(self.window_sizes)}
        if lengths != {4}:
            raise ValueError("TinyViT has exactly 4 stages: embed_dims, depths, num_heads and window_sizes need "
                             f"4 entries each, got {self.embed_dims}, {self.depths}, {self.num_heads}, "
                             f"{self.window_sizes}.")
        if self.embed_dims[-1] not in _LAST_STAGE_WIDTHS:
            raise ValueError(f"The last TinyViT stage must be {_LAST_STAGE_WIDTHS} wide (upstream keys the stride of "
                             f"its last patch merging on that), got {self.embed_dims[-1]}.")
        if self.decoder.prompt_embed_dim != _NECK_CHANNELS:
            raise ValueError(f"TinyViT's neck has {_NECK_CHANNELS} output channels, so decoder.prompt_embed_dim "
                             f"must be {_NECK_CHANNELS}, got {self.decoder.prompt_embed_dim}.")

    def encoder_kwargs(self) -> dict:
        return dict(img_size=self.img_size, in_chans=3, embed_dims=list(self.embed_dims), depths=list(self.depths),
                    num_heads=list(self.num_heads), window_sizes=list(self.window_sizes), mlp_ratio=self.mlp_ratio,
                    drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                    mbconv_expand_ratio=self.mbconv_expand_ratio, local_conv_size=self.local_conv_size)


def trained_offsets(window: int) -> dict[tuple[int, int], int]:
    """Upstream's attention-bias table layout for a ``window``×``window`` window: offset → column."""
    points = list(itertools.product(range(window), range(window)))
    offsets: dict[tuple[int, int], int] = {}
    for p1, p2 in itertools.product(points, points):
        offsets.setdefault((abs(p1[0] - p2[0]), abs(p1[1] - p2[1])), len(offsets))
    return offsets


def bias_index(window: int, trained_window: int) -> torch.Tensor:
    """N×N indices (N = window²) into a bias table trained for ``trained_window``; offsets beyond it are
    clamped to the largest trained offset on each axis."""
    table = trained_offsets(trained_window)
    points = list(itertools.product(range(window), range(window)))
    top = trained_window - 1
    idxs = [table[(min(abs(a[0] - b[0]), top), min(abs(a[1] - b[1]), top))] for a in points for b in points]
    return torch.tensor(idxs, dtype=torch.long).view(len(points), len(points))


def set_block_window(block: nn.Module, window: int) -> None:
    """Give one upstream TinyViT block ``window``, re-indexing its attention biases (trained window kept)."""
    trained = getattr(block, "trained_window_size", None)
    if trained is None:
        trained = block.trained_window_size = block.window_size
    if block.window_size == window:
        return
    attn = block.attn
    attn.attention_bias_idxs = bias_index(window, trained).to(attn.attention_biases.device)
    block.window_size = window
    attn.train(attn.training)  # rebuilds (eval) or drops (train) the cached bias buffer ``ab``


def _rescaled(size: int, new: int, old: int) -> int:
    if (size * new) % old:
        raise IncompatibleError(f"TinyViT cannot run at {new}: a stage grid of {size} at {old} would become "
                                f"{size * new / old:g}. Use a resolution that keeps every grid whole.")
    return size * new // old


class ResizableTinyViT(nn.Module):
    """Mixin for upstream TinyViT classes: input size set at run time, final grid taken from the last stage."""

    img_size: int

    @property
    def trained_window_size(self) -> int:
        """The largest window the checkpoint was trained with (14 for the published TinyViT-5M SAMs). Not
        named ``design_window_size`` (SAM ViT's): plugins read that as "one window for every block"."""
        return max(getattr(b, "trained_window_size", b.window_size) for b in self.attention_blocks())

    def attention_blocks(self) -> list[nn.Module]:
        return [blk for layer in self.layers[1:] for blk in layer.blocks]  # stage 0 is convolutional

    def set_input_size(self, img_size: int, *, match_window: bool = False) -> None:
        """Run at ``img_size``; ``match_window`` gives each stage the window that tiles its grid (module doc)."""
        self._resize_grids(img_size)
        from adaptsam.backbones.vit_b import matched_window

        for blk in self.attention_blocks():
            trained = getattr(blk, "trained_window_size", blk.window_size)
            grid = int(blk.input_resolution[0])
            set_block_window(blk, matched_window(grid, trained) if match_window else trained)

    def _resize_grids(self, img_size: int) -> None:
        old = self.img_size
        if img_size == old:
            return
        for module in self.modules():
            resolution = getattr(module, "input_resolution", None)
            if resolution is not None:
                module.input_resolution = tuple(_rescaled(r, img_size, old) for r in resolution)
        patches = tuple(_rescaled(r, img_size, old) for r in self.patch_embed.patches_resolution)
        self.patch_embed.patches_resolution = patches
        self.patches_resolution = patches
        self.img_size = img_size

    @property
    def grid(self) -> int:
        return int(self.layers[-1].input_resolution[0])

    def attention_sites(self) -> list[AttentionSite]:
        sites = []
        for layer in self.layers[1:]:  # stage 0 is convolutional
            for blk in layer.blocks:
                attn = blk.attn
                per_head = 2 * attn.key_dim + attn.d  # upstream splits each head's outputs into [q, k, v]
                segments = {"q": FusedSegment(attn.num_heads, per_head, 0, attn.key_dim),
                            "k": FusedSegment(attn.num_heads, per_head, attn.key_dim, attn.key_dim),
                            "v": FusedSegment(attn.num_heads, per_head, 2 * attn.key_dim, attn.d)}
                sites.append(AttentionSite(attn.qkv, attn.proj, segments, (blk.mlp.fc1, blk.mlp.fc2)))
        return sites

    def prompt_stages(self) -> list[PromptStage]:
        stages = []
        for previous, layer in zip(self.layers[:-1], self.layers[1:]):
            stride = self.img_size // layer.input_resolution[0]
            stages.append(PromptStage(layer.dim, stride, previous.downsample, list(layer.blocks), "blc"))
        return stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        height, width = self.layers[-1].input_resolution
        return self.neck(x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2))


def build_tinyvit_sam(encoder: nn.Module, cfg: TinyViTConfig, *, name: str, family: str, patch_stride: int,
                      recipe: InputRecipe, spec: CheckpointSpec | None, checkpoint: str | os.PathLike[str] | None,
                      pretrained: bool, download: bool, ignore_unexpected: tuple[str, ...] = (),
                      dropped_parameters: int = 0, require_official: bool = False) -> SamModel:
    info = BackboneInfo(name=name, family=family, design_size=cfg.img_size, patch_stride=patch_stride,
                        input_recipe=recipe, dropped_parameters=dropped_parameters, config=config_dict(cfg))
    model = SamModel(encoder,
                     build_prompt_encoder(cfg.decoder, design_size=cfg.img_size, patch_stride=patch_stride),
                     build_mask_decoder(cfg.decoder), info)
    return finish_backbone(model, spec, checkpoint=checkpoint, pretrained=pretrained, download=download,
                           ignore_unexpected=ignore_unexpected, require_official=require_official)


TINY_DECODER = DecoderConfig(prompt_embed_dim=256, mask_in_chans=4, transformer_depth=1, transformer_mlp_dim=64,
                             transformer_heads=2, iou_head_depth=2, iou_head_hidden_dim=32)
