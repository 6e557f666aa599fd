"""``frozen``: nothing trains. The zero-shot baseline every other row of the bench is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from adaptsam.adapters.base import Adapter, AdapterConfig
from adaptsam.model import SamModel


@dataclass(frozen=True)
class FrozenConfig(AdapterConfig):
    """No options."""


class FrozenAdapter(Adapter):
    """Zero-shot: the pretrained model as is, nothing trains (the baseline)."""

    name = "frozen"
    config_class = FrozenConfig

    def inject(self, model: SamModel) -> None:
        """Everything stays frozen."""
