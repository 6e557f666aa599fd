"""The shared real datasets (kvasir_seg, weizmann_horses, camvid), found under ``$ADAPTSAM_DATA``.

They are never shipped with adaptsam (their terms forbid redistribution): each factory opens an
``ImageMaskFolder`` at ``root`` if given, else at ``$ADAPTSAM_DATA/<name>``. The environment is read when a
factory is called, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path

from adaptsam.data.folder import ImageMaskFolder
from adaptsam.errors import DataError

DATA_ENV = "ADAPTSAM_DATA"


def data_home() -> Path | None:
    """The folder named by ``$ADAPTSAM_DATA`` (the one holding ``kvasir_seg/`` etc.), or None when unset."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def shared_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset ``name`` lives: ``root`` if given, else ``$ADAPTSAM_DATA/<name>`` (which must exist)."""
    if root is not None:
        return Path(root)
    home = data_home()
    how = (f"Set {DATA_ENV} to the folder that holds {name}/ (e.g. export {DATA_ENV}=../shared/datasets), "
           f"or pass the dataset folder itself as root=PATH (--data PATH on the command line).")
    if home is None:
        raise DataError(f"Dataset {name!r} is not shipped with adaptsam and {DATA_ENV} is not set. {how}")
    if not (home / name).is_dir():
        raise DataError(f"Dataset {name!r} expected at {home / name} ({DATA_ENV}={home}), but that folder "
                        f"does not exist. {how}")
    return home / name


def _open(name: str, split: str, root: str | os.PathLike | None, options: dict) -> ImageMaskFolder:
    options.setdefault("name", name)
    return ImageMaskFolder(shared_root(name, root), split, **options)


def kvasir_seg(split: str = "train", *, root: str | os.PathLike | None = None, **options) -> ImageMaskFolder:
    """Kvasir-SEG colonoscopy polyps, binary (1000 images; train 880, test 120), from $ADAPTSAM_DATA."""
    return _open("kvasir_seg", split, root, options)


def weizmann_horses(split: str = "train", *, root: str | os.PathLike | None = None, **options) -> ImageMaskFolder:
    """Weizmann horses, side-view figure/ground, binary (328 images; train 262, test 66), from $ADAPTSAM_DATA."""
    return _open("weizmann_horses", split, root, options)


def camvid(split: str = "train", *, root: str | os.PathLike | None = None, **options) -> ImageMaskFolder:
    """CamVid road scenes, 11 classes + ignore (701 images; train 367, val 101, test 233), from $ADAPTSAM_DATA."""
    return _open("camvid", split, root, options)
