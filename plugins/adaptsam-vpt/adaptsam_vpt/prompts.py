"""Prompt tokens of one attention block and the two forward hooks that let the block read them.

Why not prepend the tokens to the sequence, as the VPT paper does for a plain ViT? SAM ViT's windowed
blocks attend inside 14×14 windows of a B×H×W×C grid (with relative-position terms sized for the window)
and TinyViT's blocks inside windows of a B×L×C sequence (with attention-bias tables sized for the window):
neither has a sequence to prepend to, and widening a window changes the frozen position terms of every
image token. Instead, every image token *also* attends to T prompt tokens, whichever window or global
block it is in, through a second softmax (LLaMA-Adapter's zero-init attention, Zhang et al., 2023):

    out = proj( attn_image(x)  +  gate_h · softmax(q · k_pᵀ / √d) · v_p )

``q`` is the block's own query (read from the frozen ``qkv`` output), ``k_p``/``v_p`` are the prompt tokens
projected by the same frozen ``qkv``; ``gate_h`` (one per head) starts at zero, so step 0 is the frozen
model. The image-token attention, its windows, padding and position terms are untouched: nothing of
upstream's attention is copied or re-implemented, and the same code serves both families.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adaptsam.model import FusedSegment


def _split_heads(part: torch.Tensor, heads: int) -> torch.Tensor:
    """(…, groups, width) view of a fused segment → (…, heads, head_width)."""
    return part.flatten(-2).unflatten(-1, (heads, -1))


class BlockPrompts(nn.Module):
    """T learnable prompt tokens for one attention block, and a zero-initialised gate per head."""

    def __init__(self, tokens: int, dim: int, heads: int, segments: dict[str, FusedSegment]):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = segments["q"], segments["k"], segments["v"]
        bound = math.sqrt(6.0 / (tokens + dim))  # Xavier-uniform, as VPT initialises its prompts
        self.tokens = nn.Parameter(torch.empty(tokens, dim).uniform_(-bound, bound))
        self.gate = nn.Parameter(torch.zeros(heads))
        self._readout: torch.Tensor | None = None

    def readout(self, qkv: nn.Linear, qkv_output: torch.Tensor) -> torch.Tensor:
        """What each token's query reads from the prompts, gated, laid out like the attention output
        (…, heads·head_width) that enters ``proj``."""
        prompt_qkv = F.linear(self.tokens, qkv.weight, qkv.bias)  # the frozen projection, without hooks
        queries = _split_heads(self.q.view_output(qkv_output), self.heads)  # (…, h, d)
        keys = _split_heads(self.k.view_output(prompt_qkv), self.heads)  # (T, h, d)
        values = _split_heads(self.v.view_output(prompt_qkv), self.heads)  # (T, h, dv)
        scores = torch.einsum("...hd,thd->...ht", queries, keys) * queries.shape[-1] ** -0.5
        read = torch.einsum("...ht,thd->...hd", scores.softmax(dim=-1), values)
        return (read * self.gate.unsqueeze(-1)).flatten(-2)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens.shape[0]}, dim={self.tokens.shape[1]}, heads={self.heads}"


class VptPrompts(nn.Module):
    """Every prompted block's :class:`BlockPrompts`; registered in the image encoder so it trains, saves
    and moves with the model, and so the encoder counts as adapted (its embeddings are never cached)."""

    adapter_owned = True

    def __init__(self, blocks: list[BlockPrompts]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def read_prompts(prompts: BlockPrompts, module: nn.Linear, args: tuple[Any, ...], output: torch.Tensor) -> None:
    """Forward hook on ``qkv``: compute the prompt read-out for the tokens this call projected."""
    prompts._readout = prompts.readout(module, output)


def add_readout(prompts: BlockPrompts, module: nn.Linear, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook on ``proj``: add the read-out to the attention output before the output projection."""
    readout, prompts._readout = prompts._readout, None
    if readout is None or readout.shape != args[0].shape:
        got = None if readout is None else tuple(readout.shape)
        raise RuntimeError(f"VPT expected a prompt read-out of shape {tuple(args[0].shape)} from this block's qkv "
                           f"call, got {got}; the block's proj ran without (or after another) qkv call.")
    return (args[0] + readout, *args[1:])
