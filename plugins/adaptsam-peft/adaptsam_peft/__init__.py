"""HuggingFace PEFT methods as adaptsam adapters: ``peft_lora``, ``peft_dora``, ``peft_loha``, ``peft_lokr``,
``peft_ia3``, ``peft_vera``, ``peft_oft``, ``peft_boft``, ``peft_fourierft``, ``peft_hra``, ``peft_randlora``,
``peft_delora``, ``peft_road``, ``peft_miss``, ``peft_shira`` (registered through entry points)::

    model = adaptsam.create_model("lite_medsam", policy="native", resolution=128, adapter="peft_dora",
                                  adapter_cfg={"r": 8, "targets": ["qkv"]})

Modules: ``methods`` (the table of methods), ``options`` (configs generated from PEFT's), ``targets`` (which
linears, by structure), ``layers`` (injection, merge), ``adapters`` (the registered classes).
"""

__version__ = "0.1.0"
