"""Conv-LoRA for adaptsam: LoRA whose bottleneck runs a gated mixture of multi-scale convolutions.

Registered as the ``convlora`` adapter through the ``adaptsam.adapters`` entry point::

    model = adaptsam.create_model("lite_medsam", policy="native", resolution=128, adapter="convlora",
                                  adapter_cfg={"rank": 8, "scales": [1, 2, 3, 4]})
"""

from adaptsam_convlora.adapter import ConvLoraAdapter, ConvLoraConfig
from adaptsam_convlora.grid import TokenGrid
from adaptsam_convlora.layer import ConvLoraDelta
from adaptsam_convlora.mixture import ConvExpert, ConvMixture

__version__ = "0.1.0"

__all__ = ["ConvExpert", "ConvLoraAdapter", "ConvLoraConfig", "ConvLoraDelta", "ConvMixture", "TokenGrid",
           "__version__"]
