"""Backbones: one family per file (``vit_b.py``, ``vit_t.py``, ``lite_medsam.py``).

Each file defines its family's config dataclass, wraps or subclasses the upstream modules, and exposes
registered builders (``vit_b``, ``vit_test``, ...) declared as entry points in ``setup.cfg``. A new
variant is a config entry and a three-line builder.
"""
