"""``sam_adapter``: SAM-Adapter / explicit visual prompting with high-frequency image prompts.

Following Chen et al. (SAM-Adapter, 2023) and Liu et al. (EVP, CVPR 2023): the encoder input's
high-frequency component (FFT, a centred low-frequency square of area ratio τ zeroed, inverse FFT) is
patch-embedded by a trainable convolution; the frozen encoder's own token embedding goes through a
trainable "embedding tune" linear (dim → dim/scale); for every block i of a stage

    prompt_i = shared_up(GELU(tune_i(embedding_feature + high_frequency_feature)))

is added to the block's input. ``tune_i`` is per block, ``shared_up`` one linear per stage. A plain ViT has
one stage; a hierarchical TinyViT gets one prompt generator per attention stage (as EVP does for SegFormer),
each at its stage's width and token grid. The encoder stays frozen; the mask decoder trains by default.

The prompts are added by forward hooks (bound with ``functools.partial``, so ``copy.deepcopy`` of the model
re-binds them to the copied modules); the encoder's own modules and weight names are untouched.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import FlopContext, FlopCount, conv_flops, fft2_flops
from adaptsam.model import PromptStage, SamModel


def high_frequency(images: torch.Tensor, tau: float, *, magnitude: bool = False) -> torch.Tensor:
    """The high-frequency part of ``images`` (B×C×H×W): the centred low-frequency square covering a fraction
    ``tau`` of the spectrum's area is zeroed. A constant image maps to ~0; a zero-mean checkerboard (pure
    Nyquist frequency) passes unchanged. ``magnitude=True`` returns ``|·|`` like SAM-Adapter's code."""
    if not 0 <= tau <= 1:
        raise ValueError(f"Expected tau in [0, 1], got {tau}.")
    height, width = images.shape[-2:]
    spectrum = torch.fft.fftshift(torch.fft.fft2(images.float()), dim=(-2, -1))
    side_h, side_w = round(math.sqrt(tau) * height), round(math.sqrt(tau) * width)
    top, left = height // 2 - side_h // 2, width // 2 - side_w // 2
    keep = torch.ones(height, width, device=images.device)
    keep[top:top + side_h, left:left + side_w] = 0
    filtered = torch.fft.ifft2(torch.fft.ifftshift(spectrum * keep, dim=(-2, -1))).real
    return (filtered.abs() if magnitude else filtered).to(images.dtype)


class StagePrompter(nn.Module):
    """The prompt generator of one encoder stage (width ``dim``, one token per ``stride`` input pixels)."""

    def __init__(self, stage: PromptStage, scale: int):
        super().__init__()
        hidden = max(1, stage.dim // scale)
        self.layout = stage.layout
        self.hf_embed = nn.Conv2d(3, hidden, kernel_size=stage.stride, stride=stage.stride)
        self.embed_tune = nn.Linear(stage.dim, hidden)
        self.block_tunes = nn.ModuleList(nn.Linear(hidden, hidden) for _ in stage.blocks)
        self.shared_up = nn.Linear(hidden, stage.dim)
        self._base: torch.Tensor | None = None

    def start(self, embedding: torch.Tensor, high_freq: torch.Tensor) -> None:
        tokens = embedding.flatten(1, -2) if self.layout == "bhwc" else embedding  # → B×L×C
        hf = self.hf_embed(high_freq).flatten(2).transpose(1, 2)
        if hf.shape[1] != tokens.shape[1]:
            raise RuntimeError(f"High-frequency tokens ({hf.shape[1]}) and stage tokens ({tokens.shape[1]}) differ; "
                               f"is the input size a multiple of the stage stride?")
        self._base = self.embed_tune(tokens) + hf

    def prompt(self, index: int, like: torch.Tensor) -> torch.Tensor:
        if self._base is None:
            raise RuntimeError("SAM-Adapter prompts were requested before the stage embedding was seen.")
        return self.shared_up(F.gelu(self.block_tunes[index](self._base))).reshape(like.shape)


class SamAdapterPrompter(nn.Module):
    """All stages' prompt generators plus the shared high-frequency input of the current forward pass."""

    adapter_owned = True

    def __init__(self, stages: list[PromptStage], tau: float, scale: int, magnitude: bool):
        super().__init__()
        self.tau, self.magnitude = tau, magnitude
        self.stages = nn.ModuleList(StagePrompter(stage, scale) for stage in stages)
        self._high_freq: torch.Tensor | None = None

    def clear(self) -> None:
        self._high_freq = None
        for stage in self.stages:
            stage._base = None


def _on_encoder_input(prompter: SamAdapterPrompter, module: nn.Module, args: tuple[Any, ...]) -> None:
    prompter._high_freq = high_frequency(args[0], prompter.tau, magnitude=prompter.magnitude)


def _on_encoder_output(prompter: SamAdapterPrompter, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
    prompter.clear()  # don't keep per-batch tensors alive between calls


def _on_stage_embedding(prompter: SamAdapterPrompter, stage: int, module: nn.Module, args: tuple[Any, ...],
                        output: torch.Tensor) -> None:
    prompter.stages[stage].start(output, prompter._high_freq)


def _before_block(prompter: SamAdapterPrompter, stage: int, index: int, module: nn.Module,
                  args: tuple[Any, ...]) -> tuple[Any, ...]:
    x = args[0]
    return (x + prompter.stages[stage].prompt(index, x), *args[1:])


@dataclass(frozen=True)
class SamAdapterConfig(AdapterConfig):
    tau: float = help_field(0.25, "area fraction of the centred low-frequency square removed by the FFT filter")
    scale: int = help_field(32, "prompt generators work at width dim/scale")
    magnitude: bool = help_field(False, "use |high-frequency image| as SAM-Adapter's code does (default: signed)")
    train_decoder: bool = help_field(True, "also fine-tune the mask decoder")

    def __post_init__(self) -> None:
        if not 0 < self.tau < 1:
            raise ValueError(f"Expected tau in (0, 1), got {self.tau!r}.")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"Expected an integer scale >= 1, got {self.scale!r}.")


class SamAdapter(Adapter):
    """SAM-Adapter: FFT high-frequency + embedding prompts added to every encoder block; decoder trains."""

    name = "sam_adapter"
    config_class = SamAdapterConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        stages = model.prompt_stages()
        prompter = SamAdapterPrompter(stages, c.tau, c.scale, c.magnitude).to(model.device)
        encoder = model.image_encoder
        encoder.sam_adapter = prompter
        encoder.register_forward_pre_hook(functools.partial(_on_encoder_input, prompter))
        encoder.register_forward_hook(functools.partial(_on_encoder_output, prompter))
        for s, stage in enumerate(stages):
            stage.embedding.register_forward_hook(functools.partial(_on_stage_embedding, prompter, s))
            for i, block in enumerate(stage.blocks):
                block.register_forward_pre_hook(functools.partial(_before_block, prompter, s, i))
        trainable_modules(prompter)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """The FFT filter (forward + inverse per channel), and per stage the high-frequency patch embedding,
        the embedding tune, and each block's tune + shared up-projection on the stage's real tokens."""
        size = context.input_size
        fft = 2 * fft2_flops(3, size, size)
        total, training = fft, fft  # on the input image: no gradient
        prompter = model.image_encoder.sam_adapter
        for index, (stage, generator) in enumerate(zip(model.prompt_stages(), prompter.stages)):
            height, width = context.block_grid(stage.blocks[0])
            tokens = height * width
            hidden = generator.embed_tune.out_features
            hf_embed = conv_flops(generator.hf_embed, size)[0]
            tune = 2.0 * tokens * stage.dim * hidden
            blocks = len(stage.blocks) * 2.0 * tokens * (hidden * hidden + hidden * stage.dim)
            total += hf_embed + tune + blocks
            # trained: weight gradients everywhere; input gradients past the first trained product, and into
            # a later stage's embedding (earlier stages' prompts flow through it)
            training += 2 * hf_embed + (2 if index == 0 else 3) * tune + 3 * blocks
        return FlopCount(total, total, training)
