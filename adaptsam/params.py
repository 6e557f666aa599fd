"""Exact parameter counts, from the module tree alone (no forward pass)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParameterCount:
    """``trainable + frozen == total``; ``stored_bytes`` is what an adapter file holds for this model."""

    trainable: int
    frozen: int
    total: int
    stored_bytes: int
    dropped: int = 0  # upstream parameters deliberately not built (e.g. MobileSAM's classifier head)

    def __str__(self) -> str:
        dropped = f", {self.dropped:,} upstream parameters not built" if self.dropped else ""
        return (f"{self.trainable:,} trainable / {self.total:,} total ({self.frozen:,} frozen), "
                f"{self.stored_bytes:,} bytes stored{dropped}")


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count parameters once each (shared tensors are not double counted)."""
    seen: set[int] = set()
    trainable = frozen = 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            frozen += parameter.numel()
    adapter = getattr(model, "adapter", None)
    if adapter is not None:
        stored = sum(t.numel() * t.element_size() for t in adapter.trainable_state_dict(model).values())
    else:
        stored = 0
    info = getattr(model, "info", None)
    return ParameterCount(trainable=trainable, frozen=frozen, total=trainable + frozen, stored_bytes=stored,
                          dropped=getattr(info, "dropped_parameters", 0))
