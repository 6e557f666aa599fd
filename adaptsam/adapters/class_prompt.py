"""``class_prompt_lora``: few-shot segmentation without user prompts (LoRA + one stored prompt per class).

From the k-shot training set the adapter picks, with a seeded RNG, one image containing each class and a
pixel well inside that class (the class mask's interior point), encodes that point once with the prompt
encoder, and stores the result as the class's prompt embedding (fixed by default; optionally trainable).
LoRA in the encoder and, by default, the mask decoder learn to segment each class from its stored prompt.
Inference runs the decoder once per class and takes a per-pixel argmax, with a background threshold on the
winning probability. Binary data is the one-class case.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.adapters.head import PromptFreeHead
from adaptsam.adapters.lora import TARGETS, inject_lora, lora_flops, merge_lora, unmerge_lora
from adaptsam.bench.flops import FlopContext, FlopCount
from adaptsam.errors import DataError, IncompatibleError
from adaptsam.model import Prompts, SamModel, SamOutput


class ClassPrompts(PromptFreeHead):
    """One stored sparse prompt embedding per class; ``forward`` decodes every class for every image."""

    def __init__(self, classes: tuple[int, ...], tokens: int, dim: int, threshold: float, trainable: bool):
        super().__init__(classes, threshold)
        embeddings = torch.zeros(len(classes), tokens, dim)
        if trainable:
            self.embeddings = nn.Parameter(embeddings)
        else:
            self.register_buffer("embeddings", embeddings)

    def forward(self, model: SamModel, embeddings: torch.Tensor) -> SamOutput:
        batch, classes = embeddings.shape[0], self.embeddings.shape[0]
        sparse = self.embeddings.to(embeddings.dtype).unsqueeze(0).expand(batch, -1, -1, -1).flatten(0, 1)
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            batch * classes, -1, *model.embedding_grid)
        low_res, iou = model.mask_decoder(image_embeddings=embeddings.repeat_interleave(classes, dim=0),
                                          image_pe=model.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=False)
        low_res = low_res.reshape(batch, classes, *low_res.shape[-2:])
        logits = model.policy.logits_to_output(low_res, model)
        return SamOutput(logits=logits, iou=iou.reshape(batch, classes), low_res_logits=low_res)


@dataclass(frozen=True)
class ClassPromptConfig(AdapterConfig):
    rank: int = help_field(8, "LoRA rank in the encoder (8 or 16 in the few-shot literature)")
    alpha: float = help_field(8.0, "LoRA α; updates are scaled by α/r")
    targets: tuple[str, ...] = help_field(("qv",), f"LoRA targets among {TARGETS}; () for none (then the encoder "
                                          "stays frozen and embeddings can be cached)")
    classes: tuple[int, ...] = help_field((), "class indices with a stored prompt; filled from the training data")
    trainable_prompts: bool = help_field(False, "let the stored prompt embeddings train too")
    train_decoder: bool = help_field(True, "fine-tune the mask decoder")
    threshold: float | None = help_field(None, "background where the best class probability is below this; None: "
                                         "0.5 for data with a background class, 0 (plain argmax) otherwise")
    seed: int = help_field(0, "seed for choosing the prompt pixel of each class")

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"Expected rank >= 1, got {self.rank!r}.")
        if set(self.targets) - set(TARGETS):
            raise ValueError(f"Expected targets among {TARGETS}, got {self.targets!r}.")
        if self.threshold is not None and not 0 <= self.threshold < 1:
            raise ValueError(f"Expected threshold in [0, 1) or None, got {self.threshold!r}.")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes!r}.")


class ClassPromptLoraAdapter(Adapter):
    """Few-shot, prompt-free: LoRA + one stored point prompt per class, argmax over classes at inference."""

    name = "class_prompt_lora"
    config_class = ClassPromptConfig
    uses_prompts = False
    supports_merge = True

    def inject(self, model: SamModel) -> None:
        c = self.config
        if c.targets:
            inject_lora(model, c.targets, c.rank, c.alpha, 0.0)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)
        self._install(model, c.classes)  # no classes yet: an empty head until ``setup`` sees the data

    def head(self, model: SamModel) -> ClassPrompts | None:
        return getattr(model, "class_prompts", None)

    def _install(self, model: SamModel, classes: tuple[int, ...]) -> ClassPrompts:
        tokens = 2  # one point + SAM's padding point (no box)
        threshold = 0.5 if self.config.threshold is None else self.config.threshold
        head = ClassPrompts(classes, tokens, model.prompt_encoder.embed_dim, threshold,
                            self.config.trainable_prompts).to(model.device)
        model.class_prompts = head
        return head

    def setup(self, model: SamModel, train_data: Any) -> None:
        """Pick and encode one positive pixel per class from ``train_data`` (a LowResDataset)."""
        if self.config.classes:
            return  # loaded from a file: the prompts are already there
        from adaptsam.data.prompts import point_from_mask, present_classes

        classes = tuple(int(c) for c in train_data.foreground_classes)
        rng = np.random.default_rng(self.config.seed)
        points = []
        masks = [train_data.degraded(i).mask for i in range(len(train_data))]
        for cls in classes:
            holders = [i for i, mask in enumerate(masks) if cls in present_classes(mask, (cls,))]
            if not holders:
                raise DataError(f"class_prompt_lora needs at least one training image of class {cls}; the "
                                f"{len(masks)} training images have none.")
            points.append(point_from_mask(masks[int(rng.choice(holders))], cls, mode="center"))
        threshold = self.config.threshold
        if threshold is None:  # CamVid (no background class), R=128, 16 shots: mIoU 0.157 at 0.5, 0.247 at 0
            threshold = 0.0 if len(classes) == len(train_data.classes) else 0.5
        self.config = replace(self.config, classes=classes, threshold=threshold)
        head = self._install(model, classes)
        coords = torch.as_tensor(np.stack(points), dtype=torch.float32, device=model.device)[:, None, None, :]
        mapped = model.policy.prompts_to_model(Prompts(point_coords=coords, point_labels=torch.ones(
            len(classes), 1, 1, device=model.device)), model)
        with torch.no_grad():
            sparse, _ = model.prompt_encoder(points=(mapped.point_coords[:, 0], mapped.point_labels[:, 0]),
                                             boxes=None, masks=None)
            head.embeddings.copy_(sparse)

    def merge(self, model: SamModel) -> None:
        if not self.config.targets:
            raise IncompatibleError("class_prompt_lora without LoRA targets has nothing to merge.")
        merge_lora(model)

    def unmerge(self, model: SamModel) -> None:
        unmerge_lora(model)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """The encoder LoRA's unmerged updates; the per-class decoder runs are the decoder's own count
        (``context.decodes`` = classes)."""
        return lora_flops(model, context)
