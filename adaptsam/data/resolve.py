"""``open_dataset``: what ``--data SPEC`` means (DESIGN.md §5), a path or a name, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from adaptsam.data.folder import ImageMaskFolder
from adaptsam.data.shared import DATA_ENV, data_home
from adaptsam.data.types import SegmentationDataset
from adaptsam.errors import UnknownNameError
from adaptsam.registry import datasets


def looks_like_path(spec: str) -> bool:
    """A spec with a path separator (or an existing folder) is a path, never a registry name."""
    return os.sep in spec or "/" in spec or (os.altsep is not None and os.altsep in spec) or Path(spec).is_dir()


def open_dataset(spec: str, split: str = "train", **options) -> SegmentationDataset:
    """Open ``spec``: a folder in the adaptsam layout, a registered dataset name, or a folder under $ADAPTSAM_DATA.

    Resolution order: an existing folder or anything containing a path separator → ``ImageMaskFolder``;
    a registered name (``kvasir_seg``, ``synthetic``, a plugin's) → its factory; ``$ADAPTSAM_DATA/<spec>``
    if that folder exists → ``ImageMaskFolder`` named ``spec``. Otherwise the registry's
    ``UnknownNameError``, which suggests close names. ``options`` go to the factory.
    """
    if looks_like_path(spec):
        return ImageMaskFolder(spec, split, **options)
    try:
        factory = datasets.get(spec)
    except UnknownNameError as exc:
        home = data_home()
        if home is not None and (home / spec).is_dir():
            options.setdefault("name", spec)
            return ImageMaskFolder(home / spec, split, **options)
        where = f"{DATA_ENV}={home} has no folder {spec}/" if home is not None else f"{DATA_ENV} is not set"
        exc.args = (f"{exc.args[0]} It is not a dataset folder either ({where}); pass a path to use a folder "
                    "directly.",)
        raise
    return factory(split, **options)
