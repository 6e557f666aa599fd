"""``full``: every parameter trains. The upper bound on cost (and often on accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

from adaptsam.adapters.base import Adapter, AdapterConfig
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.model import SamModel


@dataclass(frozen=True)
class FullConfig(AdapterConfig):
    """No options."""


class FullAdapter(Adapter):
    """Full fine-tuning: every parameter trains; the adapter file holds the whole model."""

    name = "full"
    config_class = FullConfig

    def inject(self, model: SamModel) -> None:
        model.requires_grad_(True)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Adds no work: the same layers, all trained."""
        return ZERO
