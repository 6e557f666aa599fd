"""Analytic FLOPs of a whole SamModel pass (encoder + prompt encoder + mask decoder + adapter), per image.

Why analytic: a FLOP counter has to run the model (15 s for ViT-B at 1024 on a CPU) and cannot say which
of the work was padding. Here every matrix multiply and convolution is counted from the modules' shapes and
the token grids (2 FLOPs per multiply-add; elementwise work, norms, softmax and interpolation are left out,
as ``torch.utils.flop_counter.FlopCounterMode`` does). ``executed`` is what the model really computes,
windows padded to whole windows included; ``useful`` drops the padding tokens (each window's attention over
its real tokens only), which is what "useful GFLOP/s" divides by. ``tests/test_flops.py`` checks every
built-in backbone × adapter × policy against ``FlopCounterMode`` within 1%.

**What the counts cover.** The model as it stands: pass ``adaptsam.inference.for_inference(model)`` to
count the deployed copy the bench times (merged LoRA then adds nothing), the trained model for its
unmerged cost. Work shared by a batch (the decoder's dense positional encoding, VPT's prompt projections)
is divided by ``batch``. The resolution policy's resizes are interpolation: no FLOPs.

**Adapters.** The backbone's own layers are counted here; what an adapter adds at inference it declares
through :meth:`adaptsam.adapters.base.Adapter.extra_flops` (see ``docs/plugins.md``), given a
:class:`FlopContext` that says how many tokens each linear layer projects and each block's token grid.
``None`` means unknown: the whole count is then ``None`` and a table shows "n/a", never 0.

**FFTs** (SAM-Adapter's high-frequency filter) are counted as 5·N·log₂N per N-point complex transform,
the usual radix-2 estimate; FLOP counters count none, so the tests give ``FlopCounterMode`` that formula.
(``FlopCounterMode`` also over-counts the weight gradient of grouped convolutions by the number of groups,
as of torch 2.x: the training tests give it the correct formula for those.)

**Training step convention** (:func:`training_gflops_per_step`). Forward once; then, for every matrix
product, the backward pass autograd actually runs: one product of the same size for the weight's gradient
when the weight trains, and one for the input's gradient when a gradient has to flow into that input
(something trainable lies upstream of it). So a trained layer costs 3× its forward (2× if nothing upstream
trains), a frozen layer downstream of a trained one 2×, a frozen layer upstream of everything trainable 1×
(its forward only); an activation×activation product (attention) gets one backward product per operand
that requires a gradient. Adapter-added work (the ``extra_flops`` hook) is counted as the hook's
``FlopCount.training`` says, or 3× its forward when it says nothing. The
encoder is skipped when its embeddings are cached (frozen encoder: what ``adaptsam.engine.train.fit``
does by default). Checked against ``FlopCounterMode`` on training steps of the tiny backbones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from adaptsam.model import SamModel

if TYPE_CHECKING:
    from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (per image) executed, and the useful part of them (window padding excluded).

    ``training`` (optional, for adapters' extra work): forward + backward FLOPs of this work in a training
    step; None means the convention for trained work, 3× ``executed`` (:attr:`step`).
    """

    executed: float
    useful: float
    training: float | None = None

    @property
    def step(self) -> float:
        """Forward + backward FLOPs of this work in a training step."""
        return 3.0 * self.executed if self.training is None else self.training

    def __add__(self, other: FlopCount) -> FlopCount:
        training = None if self.training is None and other.training is None else self.step + other.step
        return FlopCount(self.executed + other.executed, self.useful + other.useful, training)

    def __mul__(self, factor: float) -> FlopCount:
        training = None if self.training is None else self.training * factor
        return FlopCount(self.executed * factor, self.useful * factor, training)

    __rmul__ = __mul__

    @property
    def padding_share(self) -> float:
        return 1.0 - self.useful / self.executed if self.executed else 0.0


ZERO = FlopCount(0.0, 0.0)


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


def fft2_flops(images: int, height: int, width: int) -> float:
    """One 2-D complex FFT of ``images`` planes of height×width: 5·N·log₂N each (the radix-2 estimate)."""
    n = height * width
    return 5.0 * images * n * math.log2(n) if n > 1 else 0.0


def _window_extents(grid: int, window: int) -> list[int]:
    """Real tokens along one side of each window when ``grid`` is cut into ``window``-sized pieces."""
    return [min(window, grid - start) for start in range(0, grid, window)]


# --- what a pass records --------------------------------------------------------------------------------------


def _trains(module: nn.Module | None) -> bool:
    """Any parameter of ``module`` (its children included: LoRA updates live there) trains."""
    return module is not None and any(p.requires_grad for p in module.parameters())


def _hooked(block: nn.Module) -> bool:
    """An adapter hooked this encoder block's input: assumed to add trained work there (SAM-Adapter's prompts;
    a hook that only reads, like Conv-LoRA's grid recorder, makes the training count a little high)."""
    return bool(block._forward_pre_hooks)


@dataclass
class FlopContext:
    """What the walk over a model's own layers learned, for adapters that add work around them.

    ``batch``: images per forward call (work shared by a call is divided by it); ``tokens``: per image,
    the token vectors each linear layer projects (``executed`` with window padding, ``useful`` without),
    keyed by ``id(layer)``; ``grids``: each encoder block's real token grid (height, width);
    ``input_size``: side of the encoder's input (the design size under ``upsample``, R under ``native``);
    ``decodes``: decoder runs per image (prompts per image, or classes of a prompt-free head).
    """

    batch: int = 1
    input_size: int = 0
    decodes: int = 1
    tokens: dict[int, FlopCount] = field(default_factory=dict)
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)
    grads: dict[int, bool] = field(default_factory=dict)

    def linear_tokens(self, layer: nn.Module) -> FlopCount:
        """Token vectors per image that ``layer`` (an encoder or decoder linear) projects in one pass."""
        try:
            return self.tokens[id(layer)]
        except KeyError:
            raise KeyError(f"{type(layer).__name__} is not a linear layer the FLOP walk saw; adapters can ask about "
                           f"the encoder's and mask decoder's own linears.") from None

    def input_grad(self, layer: nn.Module) -> bool:
        """Whether, in a training step, a gradient flows into ``layer``'s input (something upstream trains):
        an adapter's product on that input then costs a backward product for it too."""
        self.linear_tokens(layer)
        return self.grads[id(layer)]

    def block_grid(self, block: nn.Module) -> tuple[int, int]:
        """The real token grid (height, width) encoder ``block`` works on."""
        try:
            return self.grids[id(block)]
        except KeyError:
            raise KeyError(f"{type(block).__name__} is not an encoder block the FLOP walk saw.") from None


class _Tally:
    """Sums a pass's matrix products per image: forward (executed/useful) and forward + backward."""

    def __init__(self, context: FlopContext):
        self.context = context
        self.forward = ZERO
        self.training = 0.0

    def add(self, flops: FlopCount, backward: int = 0) -> None:
        self.forward += flops
        self.training += flops.executed * (1 + backward)

    def weighted(self, module: nn.Module, flops: FlopCount, flow: bool) -> bool:
        """A product with ``module``'s weight: its gradient if it trains, the input's if a gradient flows in;
        returns whether the output carries a gradient."""
        self.add(flops, int(module.weight.requires_grad) + int(flow))
        return flow or _trains(module)

    def product(self, flops: FlopCount, *flows: bool) -> bool:
        """A product of activations: one backward product per operand that carries a gradient."""
        self.add(flops, sum(int(f) for f in flows))
        return any(flows)

    def linear(self, layer: nn.Linear, tokens: FlopCount | float, flow: bool) -> bool:
        tokens = tokens if isinstance(tokens, FlopCount) else _same(float(tokens))
        flow = flow or bool(layer._forward_pre_hooks)  # an adapter adds (trained) work to its input
        seen = self.context.tokens.get(id(layer))
        self.context.tokens[id(layer)] = tokens if seen is None else seen + tokens
        self.context.grads[id(layer)] = flow or self.context.grads.get(id(layer), False)
        return self.weighted(layer, tokens * (2.0 * layer.in_features * layer.out_features), flow)

    def conv(self, conv: nn.Conv2d, size: int, flow: bool) -> tuple[bool, int]:
        flops, out = conv_flops(conv, size)
        return self.weighted(conv, _same(flops), flow), out


# --- SAM ViT (segment-anything ImageEncoderViT) --------------------------------------------------------------


def _vit_core(tokens: int, side: int, dim: int, rel_pos: bool) -> tuple[float, float]:
    """q·kᵀ (= attn·v) and one axis of decomposed rel-pos, over all heads, for one window of ``tokens``."""
    return 2.0 * tokens * tokens * dim, (2.0 * tokens * side * dim if rel_pos else 0.0)


def sam_vit_block_flops(grid: int, dim: int, mlp_hidden: int, window: int, *, rel_pos: bool = True) -> FlopCount:
    """One SAM ViT block on a ``grid``×``grid`` token map; ``window`` 0 means global attention.

    Upstream pads the map to whole windows before attention (qkv, attention, rel-pos and projection run on
    the padded tokens) and crops before the MLP.
    """
    side = grid if window == 0 else window
    extents = [grid] if window == 0 else _window_extents(grid, side)

    def attention(tokens: int) -> float:
        product, axis = _vit_core(tokens, side, dim, rel_pos)
        return 8.0 * tokens * dim * dim + 2 * product + 2 * axis

    mlp = 2.0 * grid * grid * 2 * dim * mlp_hidden
    executed = len(extents) ** 2 * attention(side * side) + mlp
    useful = sum(attention(a * b) for a in extents for b in extents) + mlp
    return FlopCount(executed, useful)


def _sam_vit_block(tally: _Tally, block: nn.Module, grid: int, flow: bool) -> bool:
    attn, window = block.attn, block.window_size
    side = grid if window == 0 else window
    extents = [grid] if window == 0 else _window_extents(grid, side)
    tally.context.grids[id(block)] = (grid, grid)
    padded = FlopCount(len(extents) ** 2 * side * side, grid * grid)
    flow = flow or _hooked(block) or _trains(block.norm1)
    qkv = tally.linear(attn.qkv, padded, flow)
    dim = attn.qkv.in_features
    cores = [_vit_core(side * side, side, dim, attn.use_rel_pos)]
    useful = [_vit_core(a * b, side, dim, attn.use_rel_pos) for a in extents for b in extents]
    windows = len(extents) ** 2
    product = FlopCount(windows * cores[0][0], sum(u[0] for u in useful))
    axis = FlopCount(windows * cores[0][1], sum(u[1] for u in useful))
    if attn.use_rel_pos:
        for table in (attn.rel_pos_h, attn.rel_pos_w):
            tally.product(axis, qkv, table.requires_grad)
    scores = tally.product(product, qkv, qkv)
    out = tally.product(product, scores, qkv)
    flow = tally.linear(attn.proj, padded, out) or flow
    flow = flow or _trains(block.norm2)
    hidden = tally.linear(block.mlp.lin1, grid * grid, flow)
    return tally.linear(block.mlp.lin2, grid * grid, hidden) or flow


def _neck(tally: _Tally, neck: nn.Module, size: int, flow: bool) -> bool:
    for module in neck:
        if isinstance(module, nn.Conv2d):
            flow, size = tally.conv(module, size, flow)
        else:
            flow = flow or _trains(module)
    return flow


def _walk_sam_vit(tally: _Tally, encoder: nn.Module, size: int) -> bool:
    proj = encoder.patch_embed.proj
    flow, grid = tally.conv(proj, size, False)
    if encoder.pos_embed is not None:
        flow = flow or encoder.pos_embed.requires_grad
    for block in encoder.blocks:
        flow = _sam_vit_block(tally, block, grid, flow)
    return _neck(tally, encoder.neck, grid, flow)


# --- TinyViT (MobileSAM / LiteMedSAM) ------------------------------------------------------------------------


def _conv_bn(tally: _Tally, part: nn.Module, size: int, flow: bool) -> tuple[bool, int]:
    """TinyViT's ``Conv2d_BN`` (the BatchNorm costs no multiply-adds; folded away in an inference copy)."""
    flow, size = tally.conv(part.c, size, flow)
    return flow or _trains(part), size


def _three_convs(tally: _Tally, block: nn.Module, size: int, flow: bool) -> tuple[bool, int]:
    """MBConv and PatchMerging: conv1 → conv2 → conv3."""
    for part in (block.conv1, block.conv2, block.conv3):
        flow, size = _conv_bn(tally, part, size, flow)
    return flow, size


def _tinyvit_attention(tally: _Tally, attn: nn.Module, windows: int, extents: list[int], side: int,
                       flow: bool) -> bool:
    heads, key_dim, value_dim = attn.num_heads, attn.key_dim, attn.d
    tokens = FlopCount(windows * side * side, sum(a * b for a in extents for b in extents))
    flow = flow or _trains(attn.norm)
    qkv = tally.linear(attn.qkv, tokens, flow)
    executed = windows * 2.0 * heads * side ** 4
    useful = sum(2.0 * heads * (a * b) ** 2 for a in extents for b in extents)
    scores = tally.product(FlopCount(executed * key_dim, useful * key_dim), qkv, qkv)
    out = tally.product(FlopCount(executed * value_dim, useful * value_dim), scores, qkv)
    return tally.linear(attn.proj, tokens, out) or flow


def _tinyvit_block(tally: _Tally, block: nn.Module, size: int, flow: bool) -> bool:
    """One TinyViT block: windowed attention (padded to whole windows unless the map is exactly one
    window), depthwise local conv, MLP."""
    window = block.window_size
    tally.context.grids[id(block)] = (size, size)
    flow = flow or _hooked(block)
    if size == window:
        flow = _tinyvit_attention(tally, block.attn, 1, [size], size, flow)
    else:
        extents = _window_extents(size, window)
        flow = _tinyvit_attention(tally, block.attn, len(extents) ** 2, extents, window, flow)
    flow, _ = _conv_bn(tally, block.local_conv, size, flow)
    flow = flow or _trains(block.mlp.norm)
    hidden = tally.linear(block.mlp.fc1, size * size, flow)
    return tally.linear(block.mlp.fc2, size * size, hidden) or flow


def tinyvit_block_flops(block: nn.Module, size: int) -> FlopCount:
    """One TinyViT block's forward FLOPs at a ``size``×``size`` token grid."""
    tally = _Tally(FlopContext())
    _tinyvit_block(tally, block, size, False)
    return tally.forward


def _walk_tinyvit(tally: _Tally, encoder: nn.Module, size: int) -> bool:
    flow = False
    for part in encoder.patch_embed.seq:
        if hasattr(part, "c"):
            flow, size = _conv_bn(tally, part, size, flow)
    for layer in encoder.layers:
        for block in layer.blocks:
            if hasattr(block, "attn"):
                flow = _tinyvit_block(tally, block, size, flow)
            else:
                flow, _ = _three_convs(tally, block, size, flow)
        if layer.downsample is not None:
            flow, size = _three_convs(tally, layer.downsample, size, flow)
    return _neck(tally, encoder.neck, size, flow)


def _walk_encoder(tally: _Tally, encoder: nn.Module, size: int) -> bool:
    if hasattr(encoder, "blocks") and hasattr(encoder.patch_embed, "proj"):
        return _walk_sam_vit(tally, encoder, size)
    if hasattr(encoder, "layers") and hasattr(encoder.patch_embed, "seq"):
        return _walk_tinyvit(tally, encoder, size)
    raise TypeError(f"No analytic FLOP formula for {type(encoder).__name__}; known: SAM ViT and TinyViT "
                    f"encoders. Count it with torch.utils.flop_counter.FlopCounterMode instead.")


def sam_vit_flops(encoder: nn.Module, img_size: int | None = None) -> FlopCount:
    """A segment-anything ``ImageEncoderViT`` (or subclass) at ``img_size`` (default: its current size)."""
    tally = _Tally(FlopContext())
    _walk_sam_vit(tally, encoder, img_size or encoder.img_size)
    return tally.forward


def tinyvit_flops(encoder: nn.Module, img_size: int | None = None) -> FlopCount:
    """An upstream TinyViT SAM encoder at ``img_size`` (default: its current size)."""
    tally = _Tally(FlopContext())
    _walk_tinyvit(tally, encoder, img_size or encoder.img_size)
    return tally.forward


def encoder_flops(model: SamModel | nn.Module, img_size: int | None = None) -> FlopCount:
    """FLOPs per image of ``model``'s image encoder as configured now (policy, R, window)."""
    encoder = model.image_encoder if isinstance(model, SamModel) else model
    tally = _Tally(FlopContext())
    _walk_encoder(tally, encoder, img_size or getattr(encoder, "img_size", 0))
    return tally.forward


# --- prompt encoder and mask decoder (segment-anything's, shared by every family) -----------------------------


def _decoder_attention(tally: _Tally, attn: nn.Module, q_tokens: float, kv_tokens: float, q_flow: bool,
                       kv_flow: bool, decodes: float) -> bool:
    """segment-anything's ``Attention``: q from one stream, k and v from another; token counts are summed
    over the ``decodes`` runs per image."""
    q = tally.linear(attn.q_proj, q_tokens, q_flow)
    k = tally.linear(attn.k_proj, kv_tokens, kv_flow)
    v = tally.linear(attn.v_proj, kv_tokens, kv_flow)
    product = _same(2.0 * q_tokens * kv_tokens * attn.internal_dim / max(decodes, 1))  # each run attends in itself
    scores = tally.product(product, q, k)
    out = tally.product(product, scores, v)
    return tally.linear(attn.out_proj, q_tokens, out)


def _mlp(tally: _Tally, mlp: nn.Module, tokens: float, flow: bool) -> bool:
    for layer in mlp.layers:
        flow = tally.linear(layer, tokens, flow)
    return flow


def _walk_decoder(tally: _Tally, model: SamModel, sparse_tokens: int, decodes: float, image_flow: bool,
                  prompt_flow: bool) -> None:
    """The mask decoder for ``decodes`` runs per image, each with ``sparse_tokens`` prompt tokens."""
    decoder, prompt_encoder = model.mask_decoder, model.prompt_encoder
    height, width = model.embedding_grid
    image = decodes * height * width
    tokens = decodes * (1 + decoder.num_mask_tokens + sparse_tokens)
    tok = prompt_flow or _trains(decoder.iou_token) or _trains(decoder.mask_tokens)
    img = image_flow or _trains(prompt_encoder.no_mask_embed)
    transformer = decoder.transformer
    for layer in transformer.layers:
        tok = _decoder_attention(tally, layer.self_attn, tokens, tokens, tok, tok, decodes) or tok
        tok = tok or _trains(layer.norm1)
        tok = _decoder_attention(tally, layer.cross_attn_token_to_image, tokens, image, tok, img, decodes) or tok
        tok = tok or _trains(layer.norm2)
        hidden = tally.linear(layer.mlp.lin1, tokens, tok)
        tok = tally.linear(layer.mlp.lin2, tokens, hidden) or tok or _trains(layer.norm3)
        img = _decoder_attention(tally, layer.cross_attn_image_to_token, image, tokens, img, tok, decodes) or img
        img = img or _trains(layer.norm4)
    tok = _decoder_attention(tally, transformer.final_attn_token_to_image, tokens, image, tok, img, decodes) or tok
    size = (height, width)
    for module in decoder.output_upscaling:
        if isinstance(module, nn.ConvTranspose2d):  # counted per input pixel, as FLOP counters do
            flops = 2.0 * decodes * size[0] * size[1] * module.in_channels * module.out_channels \
                * module.kernel_size[0] * module.kernel_size[1]
            img = tally.weighted(module, _same(flops), img)
            size = (size[0] * module.stride[0], size[1] * module.stride[1])
        else:
            img = img or _trains(module)
    hyper = False
    for mlp in decoder.output_hypernetworks_mlps:
        hyper = _mlp(tally, mlp, decodes, tok) or hyper
    channels = [m for m in decoder.output_upscaling if isinstance(m, nn.ConvTranspose2d)][-1].out_channels
    tally.product(_same(2.0 * decodes * decoder.num_mask_tokens * channels * size[0] * size[1]), hyper, img)
    _mlp(tally, decoder.iou_prediction_head, decodes, tok)


def _prompt_points(prompt: str, points: int) -> int:
    """Sparse prompt tokens of one prompt: a box is two corners; points get a padding point without a box."""
    if prompt == "box":
        return 2
    if prompt == "point":
        return points + 1
    if prompt == "box+point":
        return points + 2
    raise ValueError(f"Expected prompt in ('box', 'point', 'box+point'), got {prompt!r}.")


def _prompt_encoder(tally: _Tally, model: SamModel, sparse_tokens: int, decodes: float, batch: int) -> None:
    """The random-Fourier positional encodings: each prompt corner/point, and the dense grid once per call."""
    half = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.shape[1]
    if sparse_tokens:
        tally.add(_same(2.0 * decodes * sparse_tokens * 2 * half))
    height, width = model.embedding_grid
    tally.add(_same(2.0 * height * width * 2 * half / batch))


def _head_decoding(model: SamModel) -> tuple[int, int] | None:
    """(decoder runs per image, sparse tokens each) of the model's prompt-free head; None when no head; raises
    LookupError for a head whose decoding this module doesn't know."""
    head = model.head
    if head is None:
        return None
    embeddings = getattr(head, "embeddings", None)
    if embeddings is None or embeddings.dim() != 3:
        raise LookupError(type(head).__name__)
    return int(embeddings.shape[0]), int(embeddings.shape[1])


# --- the reference these counts are checked against -----------------------------------------------------------


def flop_counter() -> FlopCounterMode:
    """``torch.utils.flop_counter.FlopCounterMode`` as the tests (and plugins' tests) use it to check these
    counts: FFTs counted by :func:`fft2_flops`'s convention (torch counts none), and the weight gradient of a
    grouped convolution counted as the forward's size (torch multiplies it by the number of groups)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

    def fft(x_shape, dim, *args, out_shape=None, **kwargs) -> float:
        n = math.prod(x_shape[d] for d in dim)
        return 5.0 * math.prod(x_shape) * math.log2(n) if n > 1 else 0.0

    def conv_backward(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding,
                      groups, output_mask, out_shape=None) -> float:
        return conv_flop_count(x_shape, w_shape, grad_out_shape, transposed) * (int(output_mask[0]) +
                                                                                 int(output_mask[1]))

    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={aten._fft_c2c: fft, aten.convolution_backward: conv_backward})


# --- the whole model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFlops:
    """FLOPs per image of one pass, by part; ``adapter`` None = the adapter's extra work is unknown."""

    encoder: FlopCount
    prompt_encoder: FlopCount
    decoder: FlopCount
    adapter: FlopCount | None
    batch: int
    decodes: int

    @property
    def total(self) -> FlopCount | None:
        if self.adapter is None:
            return None
        return self.encoder + self.prompt_encoder + self.decoder + self.adapter


def _encoder_size(model: SamModel) -> int:
    return int(getattr(model.image_encoder, "img_size", model.resolution))


def _walk(model: SamModel, batch: int, prompt: str, points: int, prompts: int, *,
          cached: bool = False) -> tuple[ModelFlops, _Tally, FlopContext] | tuple[None, None, None]:
    if batch < 1 or prompts < 1:
        raise ValueError(f"Expected batch >= 1 and prompts >= 1, got batch={batch}, prompts={prompts}.")
    try:
        head = _head_decoding(model)
    except LookupError:
        return None, None, None
    if head is None:
        decodes, sparse, prompt_flow = prompts, _prompt_points(prompt, points), _trains(model.prompt_encoder)
    else:
        decodes, sparse = head
        prompt_flow = any(p.requires_grad for p in model.head.parameters())
    context = FlopContext(batch=batch, input_size=_encoder_size(model), decodes=decodes)
    encoder = _Tally(context)
    image_flow = False if cached else _walk_encoder(encoder, model.image_encoder, context.input_size)
    if cached:
        encoder.forward, encoder.training = ZERO, 0.0
    prompt_encoder = _Tally(context)
    if head is None:
        _prompt_encoder(prompt_encoder, model, sparse, decodes, batch)
    else:  # stored prompts: only the dense positional encoding runs
        _prompt_encoder(prompt_encoder, model, 0, decodes, batch)
    decoder = _Tally(context)
    _walk_decoder(decoder, model, sparse, decodes, image_flow, prompt_flow)
    adapter = model.adapter.extra_flops(model, context) if model.adapter is not None else ZERO
    flops = ModelFlops(encoder.forward, prompt_encoder.forward, decoder.forward, adapter, batch, decodes)
    total = _Tally(context)
    total.training = encoder.training + prompt_encoder.training + decoder.training
    return flops, total, context


def model_flops(model: SamModel, batch: int = 4, *, prompt: str = "box", points: int = 1,
                prompts: int = 1) -> ModelFlops | None:
    """FLOPs per image of one forward of ``model`` as it stands, by part, for ``batch`` images per call with
    ``prompts`` prompts each (a box: ``prompt="box"``; ``points`` points: ``"point"``). A prompt-free head
    decodes once per class instead. None when the model's prompt-free head is one this module can't count."""
    return _walk(model, batch, prompt, points, prompts)[0]


def inference_gflops(model: SamModel, batch: int = 4, *, prompts: int = 1) -> dict[str, float] | None:
    """GFLOPs per image of ``model``'s inference pass (encoder + prompt encoder + decoder + adapter), with one
    box per image like the bench's timing inputs: ``{"executed": …, "useful": …}``; None when unknown
    (an adapter that doesn't declare its extra work). Give it ``for_inference(model)`` to count what the
    bench times."""
    flops = model_flops(model, batch, prompts=prompts)
    total = None if flops is None else flops.total
    if total is None:
        return None
    return {"executed": total.executed / 1e9, "useful": total.useful / 1e9}


def training_gflops_per_step(model: SamModel, batch: int, *, prompts: int = 1, cached: bool | None = None
                             ) -> float | None:
    """GFLOPs of one training step of ``model`` on ``batch`` images with ``prompts`` boxes each (forward +
    backward, by the convention in this module's docstring); 0 when nothing trains; None when unknown.
    ``cached`` (default: whether the encoder is frozen, as training does) skips the encoder."""
    if not any(p.requires_grad for p in model.parameters()):
        return 0.0
    if cached is None:
        cached = model.adapter is None or model.adapter.encoder_frozen(model)
    flops, tally, _ = _walk(model, batch, "box", 1, prompts, cached=cached)
    if flops is None or flops.adapter is None:
        return None
    return (tally.training + flops.adapter.step) * batch / 1e9
