"""Visual prompt tuning for adaptsam, built for windowed attention (SAM ViT, TinyViT).

Registered as the ``vpt`` adapter through the ``adaptsam.adapters`` entry point::

    model = adaptsam.create_model("vit_b", policy="native", resolution=256, adapter="vpt",
                                  adapter_cfg={"tokens": 8, "deep": True})
"""

from adaptsam_vpt.adapter import VptAdapter, VptConfig
from adaptsam_vpt.prompts import BlockPrompts

__version__ = "0.1.0"

__all__ = ["BlockPrompts", "VptAdapter", "VptConfig", "__version__"]
