"""Analytic FLOPs of the image encoders, at whatever input size and window the encoder is set to.

Why analytic: a FLOP counter has to run the model (15 s for ViT-B at 1024 on a CPU) and cannot say which
of the work was padding. Here every matrix multiply and convolution is counted from the modules' shapes and
the token grids (2 FLOPs per multiply-add; elementwise work, norms and softmax are left out, as FLOP counters
do). ``executed`` is what the encoder really computes, windows padded to whole windows included;
``useful`` drops the padding tokens (each window's attention over its real tokens only), which is what
"useful GFLOP/s" divides by. ``tests/test_flops.py`` checks both backbones against
``torch.utils.flop_counter.FlopCounterMode`` within 2%.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from adaptsam.model import SamModel


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one image through the encoder."""

    executed: float
    useful: float

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.executed + other.executed, self.useful + other.useful)

    @property
    def padding_share(self) -> float:
        return 1.0 - self.useful / self.executed if self.executed else 0.0


def _same(flops: float) -> FlopCount:
    return FlopCount(flops, flops)


def linear_flops(tokens: int, layer: nn.Linear) -> float:
    return 2.0 * tokens * layer.in_features * layer.out_features


def conv_output_size(conv: nn.Conv2d, size: int) -> int:
    return (size + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1


def conv_flops(conv: nn.Conv2d, size: int) -> tuple[float, int]:
    """FLOPs of a square ``size``×``size`` input through ``conv`` (groups respected) and the output size."""
    out = conv_output_size(conv, size)
    per_pixel = conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
    return 2.0 * out * out * per_pixel, out


def conv_chain_flops(convs: Iterable[nn.Conv2d], size: int) -> tuple[float, int]:
    """FLOPs of convolutions applied one after another from a ``size``×``size`` input, and the final size."""
    total = 0.0
    for conv in convs:
        flops, size = conv_flops(conv, size)
        total += flops
    return total, size


def _window_extents(grid: int, window: int) -> list[int]:
    """Real tokens along one side of each window when ``grid`` is cut into ``window``-sized pieces."""
    return [min(window, grid - start) for start in range(0, grid, window)]


# --- SAM ViT (segment-anything ImageEncoderViT) --------------------------------------------------------------


def sam_vit_block_flops(grid: int, dim: int, mlp_hidden: int, window: int, *, rel_pos: bool = True) -> FlopCount:
    """One SAM ViT block on a ``grid``×``grid`` token map; ``window`` 0 means global attention.

    Upstream pads the map to whole windows before attention (qkv, attention, rel-pos and projection run on
    the padded tokens) and crops before the MLP.
    """
    side = grid if window == 0 else window
    extents = [grid] if window == 0 else _window_extents(grid, side)
    padded_windows = len(extents) ** 2
    window_tokens = side * side

    def attention(tokens: int) -> float:
        # q·kᵀ and attn·v over all heads: tokens² · dim each; decomposed rel-pos: tokens · side · dim per axis
        core = 2 * tokens * tokens * dim + (2 * tokens * side * dim if rel_pos else 0)
        return 2.0 * (tokens * 4 * dim * dim + core)

    mlp = 2.0 * grid * grid * 2 * dim * mlp_hidden
    executed = padded_windows * attention(window_tokens) + mlp
    useful = sum(attention(a * b) for a in extents for b in extents) + mlp
    return FlopCount(executed, useful)


def sam_vit_flops(encoder: nn.Module, img_size: int | None = None) -> FlopCount:
    """A segment-anything ``ImageEncoderViT`` (or subclass) at ``img_size`` (default: its current size)."""
    size = img_size or encoder.img_size
    proj = encoder.patch_embed.proj
    total, grid = conv_flops(proj, size)
    total = _same(total)
    for block in encoder.blocks:
        attn = block.attn
        total += sam_vit_block_flops(grid, attn.qkv.in_features, block.mlp.lin1.out_features, block.window_size,
                                     rel_pos=attn.use_rel_pos)
    return total + _same(_neck_flops(encoder.neck, grid))


def _neck_flops(neck: nn.Module, size: int) -> float:
    return conv_chain_flops((m for m in neck if isinstance(m, nn.Conv2d)), size)[0]


# --- TinyViT (MobileSAM / LiteMedSAM) ------------------------------------------------------------------------


def _conv_bn_chain(parts: Iterable[nn.Module], size: int) -> tuple[float, int]:
    """TinyViT's ``Conv2d_BN`` parts in sequence (the BatchNorm costs no multiply-adds)."""
    return conv_chain_flops((part.c for part in parts), size)


def _three_convs(block: nn.Module, size: int) -> tuple[float, int]:
    """MBConv and PatchMerging: conv1 → conv2 → conv3."""
    return _conv_bn_chain((block.conv1, block.conv2, block.conv3), size)


def _tinyvit_attention(attn: nn.Module, tokens: int) -> float:
    heads, key_dim, value_dim = attn.num_heads, attn.key_dim, attn.d
    return (linear_flops(tokens, attn.qkv) + linear_flops(tokens, attn.proj)
            + 2.0 * heads * tokens * tokens * (key_dim + value_dim))


def tinyvit_block_flops(block: nn.Module, size: int) -> FlopCount:
    """One TinyViT block: windowed attention (padded to whole windows unless the map is exactly one
    window), depthwise local conv, MLP."""
    window = block.window_size
    if size == window:
        attention = _same(_tinyvit_attention(block.attn, size * size))
    else:
        extents = _window_extents(size, window)
        executed = len(extents) ** 2 * _tinyvit_attention(block.attn, window * window)
        useful = sum(_tinyvit_attention(block.attn, a * b) for a in extents for b in extents)
        attention = FlopCount(executed, useful)
    local, _ = _conv_bn_chain((block.local_conv,), size)
    mlp = linear_flops(size * size, block.mlp.fc1) + linear_flops(size * size, block.mlp.fc2)
    return attention + _same(local + mlp)


def tinyvit_flops(encoder: nn.Module, img_size: int | None = None) -> FlopCount:
    """An upstream TinyViT SAM encoder at ``img_size`` (default: its current size)."""
    size = img_size or encoder.img_size
    flops, size = _conv_bn_chain((part for part in encoder.patch_embed.seq if hasattr(part, "c")), size)
    total = _same(flops)
    for layer in encoder.layers:
        for block in layer.blocks:
            if hasattr(block, "attn"):
                total += tinyvit_block_flops(block, size)
            else:
                total += _same(_three_convs(block, size)[0])
        if layer.downsample is not None:
            flops, size = _three_convs(layer.downsample, size)
            total += _same(flops)
    return total + _same(_neck_flops(encoder.neck, size))


def encoder_flops(model: SamModel | nn.Module, img_size: int | None = None) -> FlopCount:
    """FLOPs per image of ``model``'s image encoder as configured now (policy, R, window)."""
    encoder = model.image_encoder if isinstance(model, SamModel) else model
    if hasattr(encoder, "blocks") and hasattr(encoder.patch_embed, "proj"):
        return sam_vit_flops(encoder, img_size)
    if hasattr(encoder, "layers") and hasattr(encoder.patch_embed, "seq"):
        return tinyvit_flops(encoder, img_size)
    raise TypeError(f"No analytic FLOP formula for {type(encoder).__name__}; known: SAM ViT and TinyViT "
                    f"encoders. Count it with torch.utils.flop_counter.FlopCounterMode instead.")
