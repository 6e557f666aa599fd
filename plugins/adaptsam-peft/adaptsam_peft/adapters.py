"""The registered adapters: one adaptsam ``Adapter`` class per PEFT method of ``methods.METHODS``.

Every class is the same ``PeftAdapter`` with its method and generated config class; ``setup.cfg`` points
one entry point at each name below. Adding a method = one ``PeftMethod`` entry + one line here + one
entry point.
"""

from __future__ import annotations

from typing import ClassVar

from adaptsam.adapters.base import Adapter, trainable_modules
from adaptsam.model import SamModel
from adaptsam_peft import layers
from adaptsam_peft.methods import METHODS, PeftMethod
from adaptsam_peft.options import PeftOptions, config_class_for


class PeftAdapter(Adapter):
    """A HuggingFace PEFT method on SAM's linears; trains and merges through PEFT's own layers."""

    method: ClassVar[PeftMethod]
    config: PeftOptions

    def inject(self, model: SamModel) -> None:
        layers.inject(model, self.config)
        if self.config.train_decoder:
            trainable_modules(model.mask_decoder)

    def merge(self, model: SamModel) -> None:
        layers.merge(model)

    def unmerge(self, model: SamModel) -> None:
        layers.unmerge(model)


def adapter_for(name: str) -> type[PeftAdapter]:
    method = METHODS[name]
    class_name = "".join(part.capitalize() for part in name.split("_"))
    return type(class_name, (PeftAdapter,), {
        "name": name, "method": method, "config_class": config_class_for(method),
        "supports_merge": method.supports_merge, "__module__": __name__,
        "__doc__": f"{method.summary} (peft.{method.config}).\n\n{method.paper}.",
    })


PeftLora = adapter_for("peft_lora")
PeftDora = adapter_for("peft_dora")
PeftLoha = adapter_for("peft_loha")
PeftLokr = adapter_for("peft_lokr")
PeftIa3 = adapter_for("peft_ia3")
PeftVera = adapter_for("peft_vera")
PeftOft = adapter_for("peft_oft")
PeftBoft = adapter_for("peft_boft")
PeftFourierft = adapter_for("peft_fourierft")
PeftHra = adapter_for("peft_hra")
PeftRandlora = adapter_for("peft_randlora")
PeftDelora = adapter_for("peft_delora")
PeftRoad = adapter_for("peft_road")
PeftMiss = adapter_for("peft_miss")
PeftShira = adapter_for("peft_shira")
