"""Public helpers for building a SAM-family backbone: the parts every backbone shares, and weight loading.

adaptsam's own backbones (``vit_b.py``, ``vit_t.py``, ``lite_medsam.py``) are built with exactly these, and so
can a backbone plugin (docs/plugins.md, "Backbones"): build an image encoder, take SAM's prompt encoder and
mask decoder from :func:`build_prompt_encoder` / :func:`build_mask_decoder` with a :class:`DecoderConfig`,
put them in a :class:`~adaptsam.model.SamModel`, and hand it to :func:`finish_backbone`, which loads and
checks the weights (before ``eval()``, see DESIGN.md's TinyViT pitfall) and records where they came from::

    from adaptsam.backbones.build import DecoderConfig, build_mask_decoder, build_prompt_encoder, finish_backbone

    decoder = DecoderConfig(transformer_mlp_dim=512)
    model = SamModel(encoder, build_prompt_encoder(decoder, design_size=256, patch_stride=16),
                     build_mask_decoder(decoder), info)
    return finish_backbone(model, spec, checkpoint=checkpoint, pretrained=pretrained, download=download)

The prompt encoder and mask decoder are segment-anything's own classes (imported lazily), never copies.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from adaptsam.assets import CheckpointSpec, check_state_dict, load_state_dict, resolve_checkpoint, sha256_of
from adaptsam.backbones._upstream import decoder_modeling
from adaptsam.errors import CheckpointError, ConfigError
from adaptsam.model import SamModel


@dataclass(frozen=True)
class DecoderConfig:
    """SAM's prompt encoder + two-way-transformer mask decoder (defaults: the published SAM numbers)."""

    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def __post_init__(self) -> None:
        if self.prompt_embed_dim % self.transformer_heads:
            raise ConfigError(f"prompt_embed_dim ({self.prompt_embed_dim}) must be divisible by transformer_heads "
                             f"({self.transformer_heads}).")


__all__ = ["DecoderConfig", "build_mask_decoder", "build_prompt_encoder", "config_dict", "file_sha256",
           "finish_backbone"]


def build_prompt_encoder(cfg: DecoderConfig, *, design_size: int, patch_stride: int) -> nn.Module:
    """segment-anything's ``PromptEncoder`` for a ``design_size`` input and an encoder of ``patch_stride``
    (the policies later resize its grid to R)."""
    grid = design_size // patch_stride
    return decoder_modeling().PromptEncoder(embed_dim=cfg.prompt_embed_dim, image_embedding_size=(grid, grid),
                                            input_image_size=(design_size, design_size),
                                            mask_in_chans=cfg.mask_in_chans)


def build_mask_decoder(cfg: DecoderConfig) -> nn.Module:
    """segment-anything's ``MaskDecoder`` with its ``TwoWayTransformer``, sized by ``cfg``."""
    modeling = decoder_modeling()
    transformer = modeling.TwoWayTransformer(depth=cfg.transformer_depth, embedding_dim=cfg.prompt_embed_dim,
                                             mlp_dim=cfg.transformer_mlp_dim, num_heads=cfg.transformer_heads)
    return modeling.MaskDecoder(num_multimask_outputs=cfg.num_multimask_outputs, transformer=transformer,
                                transformer_dim=cfg.prompt_embed_dim, iou_head_depth=cfg.iou_head_depth,
                                iou_head_hidden_dim=cfg.iou_head_hidden_dim)


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process (vit_b's file is 375 MB)."""
    stat = Path(path).stat()
    return _cached_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def config_dict(cfg: Any) -> dict[str, Any]:
    """A backbone config as a plain dict (for ``BackboneInfo.config``): a dataclass's fields, or a mapping's items."""
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def finish_backbone(model: SamModel, spec: CheckpointSpec | None, *, checkpoint: str | os.PathLike[str] | None,
                    pretrained: bool, download: bool, ignore_unexpected: tuple[str, ...] = (),
                    require_official: bool = False) -> SamModel:
    """Load weights (when asked and available), record where they came from, and switch to eval mode.

    Weights are loaded *before* ``eval()`` so TinyViT caches attention biases computed from the loaded
    parameters (see DESIGN.md, pitfalls). ``pretrained=False`` without a checkpoint keeps the random
    initialisation, and the model's info says so, so every table downstream can mark it as untrained.
    A backbone without published weights (the tiny test configs) treats ``pretrained=True`` the same way.
    """
    path: Path | None = None
    if checkpoint is not None:
        path = resolve_checkpoint(spec or CheckpointSpec(Path(checkpoint).name), checkpoint)
    elif pretrained and spec is not None:
        path = resolve_checkpoint(spec, download=download)
    info = model.info
    if path is not None:
        state = load_state_dict(path)
        check_state_dict(path, model.state_dict(), state, ignore_unexpected=ignore_unexpected)
        digest = file_sha256(path)
        official = spec is not None and spec.sha256 is not None and digest == spec.sha256
        if require_official and not official and checkpoint is None:
            raise CheckpointError(f"{path} has sha256 {digest}, expected {spec.sha256 if spec else '?'}: the "
                                  f"packaged weights are damaged; reinstall the package that ships them.")
        kept = {k: v for k, v in state.items() if not k.startswith(ignore_unexpected)} \
            if ignore_unexpected else state
        model.load_state_dict(kept, strict=True)
        info = replace(info, pretrained=True, checkpoint=str(path), checkpoint_sha256=digest,
                       official_weights=official)
    model.info = info
    return model.eval()
