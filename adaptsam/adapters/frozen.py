"""``frozen``: nothing trains. The zero-shot baseline every other row of the bench is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from adaptsam.adapters.base import Adapter, AdapterConfig
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.model import SamModel


@dataclass(frozen=True)
class FrozenConfig(AdapterConfig):
    """No options."""


class FrozenAdapter(Adapter):
    """Zero-shot: the pretrained model as is, nothing trains (the baseline)."""

    name = "frozen"
    config_class = FrozenConfig
    trains_nothing = True  # no seed changes a zero-shot result: the bench runs it once for every seed

    def inject(self, model: SamModel) -> None:
        """Everything stays frozen."""

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Adds no work to the backbone's pass."""
        return ZERO
