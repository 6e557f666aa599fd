"""An example resolution-policy plugin for adaptsam: native R×R input with attention windows that tile the grid.

Registered as the ``native_window`` policy through the ``adaptsam.policies`` entry point::

    model = adaptsam.create_model("vit_b", policy="native_window", resolution=256)
"""

from adaptsam_native_window.policy import NativeWindowPolicy, padding_fraction

__version__ = "0.1.0"

__all__ = ["NativeWindowPolicy", "__version__", "padding_fraction"]
