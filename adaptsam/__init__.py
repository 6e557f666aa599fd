"""adaptsam: which way of adapting Segment Anything works best on low-resolution images.

The public API (stable; extend, don't rename)::

    import adaptsam
    adaptsam.list_backbones(); adaptsam.list_adapters(); adaptsam.list_policies(); adaptsam.list_datasets()
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=128,
                                  adapter="lora", adapter_cfg={"rank": 8})
    out = model(images, boxes=boxes)        # out.logits B×1×R×R, out.iou
    adaptsam.count_parameters(model)

Importing adaptsam has no side effects: no file reads, no plugin imports (discovery is lazy), no torch
configuration. Heavy submodules are imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # registry
    "register_backbone": ("adaptsam.api", "register_backbone"),
    "register_adapter": ("adaptsam.api", "register_adapter"),
    "register_policy": ("adaptsam.api", "register_policy"),
    "register_dataset": ("adaptsam.api", "register_dataset"),
    "list_backbones": ("adaptsam.api", "list_backbones"),
    "list_adapters": ("adaptsam.api", "list_adapters"),
    "list_policies": ("adaptsam.api", "list_policies"),
    "list_datasets": ("adaptsam.api", "list_datasets"),
    # models
    "create_model": ("adaptsam.api", "create_model"),
    "save_adapter": ("adaptsam.api", "save_adapter"),
    "load_adapter": ("adaptsam.api", "load_adapter"),
    "merge_adapter": ("adaptsam.api", "merge_adapter"),
    "unmerge_adapter": ("adaptsam.api", "unmerge_adapter"),
    "count_parameters": ("adaptsam.params", "count_parameters"),
    "ParameterCount": ("adaptsam.params", "ParameterCount"),
    "SamModel": ("adaptsam.model", "SamModel"),
    "SamOutput": ("adaptsam.model", "SamOutput"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adaptsam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
