"""BitFit for adaptsam: only the bias terms of SAM's image encoder train (Ben Zaken et al., ACL 2022).

Registered as the ``bitfit`` adapter through the ``adaptsam.adapters`` entry point::

    model = adaptsam.create_model("lite_medsam", policy="native", resolution=128, adapter="bitfit")
"""

from adaptsam_bitfit.adapter import BitFitAdapter, BitFitConfig, bias_parameters

__version__ = "0.1.0"

__all__ = ["BitFitAdapter", "BitFitConfig", "__version__", "bias_parameters"]
