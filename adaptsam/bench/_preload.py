"""Imported once by the bench's forkserver, so every cell's worker process starts with the heavy modules loaded.

Only imports (of adaptsam's modules and of every registered part): nothing runs a torch operation here, so
no thread pool exists to be forked.
"""

from __future__ import annotations

import importlib

from adaptsam import registry

MODULES = ("torch", "numpy", "adaptsam.api", "adaptsam.model", "adaptsam.inference", "adaptsam.params",
           "adaptsam.adapters.io", "adaptsam.adapters.base", "adaptsam.engine.experiment", "adaptsam.engine.train",
           "adaptsam.engine.evaluate", "adaptsam.data", "adaptsam.bench.cell", "adaptsam.bench.timing",
           "adaptsam.bench.measure", "adaptsam.bench.flops")

for _name in MODULES:
    importlib.import_module(_name)
for _registry in registry.REGISTRIES.values():
    _registry.entries()  # imports built-ins and plugins (segment-anything, timm, ...) once; broken ones stay marked
