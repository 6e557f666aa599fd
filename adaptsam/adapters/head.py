"""The prompt-free head: how an adapter that segments without user prompts declares it.

Class prompts, PerSAM and prototype matching all turn image embeddings into one mask per class without a
box or a point from the user. Such an adapter returns its head from :meth:`Adapter.head`; the model
(``SamModel.head`` / ``SamModel.uses_prompts``), training and evaluation batches, ``predict`` and ONNX
export ask the model for that head and never for a particular adapter, so a new prompt-free method is one
file and one entry-point line.

A head is an ``nn.Module`` the adapter installs as a sub-module of the model: it moves with the model
between devices, and its buffers (stored prompts, prototypes, target embeddings) are saved with the
adapter (``adapter_owned``) so a loaded file predicts exactly what was saved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from adaptsam.data.types import IGNORE_INDEX
from adaptsam.postprocess import class_labels

if TYPE_CHECKING:
    from adaptsam.model import SamModel, SamOutput


class PromptFreeHead(nn.Module, ABC):
    """One mask per class from image embeddings alone.

    Subclasses call ``super().__init__(classes, threshold)`` and implement :meth:`forward`.

    Attributes:
        class_ids: int64 buffer (C,), the dataset class index of each output channel.
        threshold: background where the best class probability (sigmoid of its logit) is below this;
            0 labels every pixel with its most probable class (data whose classes cover every pixel).
    """

    adapter_owned = True  # buffers are saved with the adapter

    def __init__(self, classes: Sequence[int], threshold: float = 0.5):
        super().__init__()
        if not 0 <= threshold < 1:
            raise ValueError(f"Expected a head threshold in [0, 1), got {threshold!r}.")
        self.register_buffer("class_ids", torch.tensor(tuple(int(c) for c in classes), dtype=torch.int64))
        self.threshold = float(threshold)

    @abstractmethod
    def forward(self, model: SamModel, embeddings: torch.Tensor) -> SamOutput:
        """B×C×h×w image embeddings → ``SamOutput`` with logits B×C×R×R (one channel per class, at the model's
        input resolution R) and a score B×C per class."""

    @property
    def background_label(self) -> int:
        """0 when 0 is background; the ignore label when class 0 is a real class (e.g. CamVid's sky)."""
        return IGNORE_INDEX if 0 in self.class_ids.tolist() else 0

    def labels(self, logits: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B×)C×H×W logits → (B×)H×W class labels: the most probable class, or :attr:`background_label` where
        its probability is below ``threshold`` (default: the head's own)."""
        return class_labels(logits, self.class_ids.tolist(), self.threshold if threshold is None else threshold,
                            self.background_label)
