"""Exceptions raised by adaptsam.

Every error says what was expected, what was got and, where it can, how to fix it. They subclass the
built-in exception a caller would naturally catch (``KeyError`` for unknown names, ``ValueError`` for bad
input, ``RuntimeError`` for broken files), so ``except KeyError`` keeps working for people who don't know
adaptsam's own types.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def plural_of(kind: str) -> str:
    """English plural of a kind of part: "policy" → "policies", "backbone" → "backbones"."""
    if kind.endswith("y") and kind[-2:-1] not in tuple("aeiou"):
        return kind[:-1] + "ies"
    return kind + ("es" if kind.endswith(("s", "x", "ch", "sh")) else "s")


class AdaptsamError(Exception):
    """Base class of every adaptsam error."""


class UnknownNameError(AdaptsamError, KeyError):
    """A registry name that nothing registered; the message lists close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str], plural: str | None = None):
        known = sorted(known)
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        super().__init__(f"Unknown {kind} {name!r}.{hint} Registered {plural or plural_of(kind)}: {listing}.")

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class DuplicateNameError(AdaptsamError, KeyError):
    """Two sources (distributions or in-process registrations) claim the same name."""

    def __init__(self, kind: str, name: str, sources: Iterable[str]):
        self.kind, self.name, self.sources = kind, name, sorted(set(sources))
        super().__init__(
            f"{kind} {name!r} is registered by more than one source: {', '.join(self.sources)}. "
            f"Uninstall one of them, or register the in-process one under another name."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class PluginLoadError(AdaptsamError, ImportError):
    """An entry point that failed to import; other plugins keep working."""

    def __init__(self, kind: str, name: str, origin: str, target: str, cause: BaseException):
        self.kind, self.name, self.origin, self.target, self.cause = kind, name, origin, target, cause
        super().__init__(
            f"{kind} {name!r} from distribution {origin!r} (entry point {target}) failed to load: "
            f"{type(cause).__name__}: {cause}"
        )


class IncompatibleError(AdaptsamError, ValueError):
    """A combination of parts (backbone, adapter, policy, resolution, data) that cannot work together."""


class CheckpointError(AdaptsamError, RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit the model it is loaded into."""


class DataError(AdaptsamError, ValueError):
    """A dataset file or folder that is missing or malformed; the message names the file."""


class ConfigError(AdaptsamError, ValueError):
    """A bad option value from the user (a flag, a YAML key, an adapter or policy option): the message names the
    option and the value, says what was expected and how to fix it. The CLI prints it as one line, exit 2."""


class BusyError(AdaptsamError, RuntimeError):
    """A resource another process holds (a bench's output folder); the message names the holder."""


class Terminated(BaseException):
    """SIGTERM, raised where a long command is (as KeyboardInterrupt is for SIGINT) so it can put its work back
    in order — the bench returns the running cell to pending and writes its report — before exiting 143."""


def format_list(items: Iterable[str], limit: int = 8) -> str:
    """``a, b, c and 12 more``: keeps error messages readable when hundreds of keys differ."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown
