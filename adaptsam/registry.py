"""One registry design for the four kinds of parts: backbones, adapters, resolution policies, datasets.

Built-ins are declared as entry points in adaptsam's own ``setup.cfg``, exactly like third-party plugins,
so there is one code path. Discovery reads package metadata only (nothing is imported until a part is
used), happens on first lookup, and is cached. A plugin that fails to import is recorded as broken with
its distribution, entry point and exception; the other parts keep working (flake8's finder, not pytest's
all-or-nothing). Two distributions claiming one name is an error naming both, raised when that name is
used. ``ADAPTSAM_NO_PLUGINS=1`` ignores every entry point outside adaptsam itself.

A decorator registers parts in-process (notebooks, tests)::

    @adaptsam.register_adapter("my_lora")
    class MyLora(Adapter): ...
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from adaptsam.errors import ConfigError, DuplicateNameError, PluginLoadError, UnknownNameError, plural_of

T = TypeVar("T")

BUILTIN_DISTRIBUTION = "adaptsam"
IN_PROCESS = "<in-process>"
NO_PLUGINS_ENV = "ADAPTSAM_NO_PLUGINS"


@dataclass
class Entry:
    """One registered part: where it comes from and, once loaded, the object itself."""

    name: str
    kind: str
    origin: str  # distribution name, or "<in-process>"
    version: str | None
    target: str  # "module:attr" for entry points, the qualified name for in-process objects
    loader: Callable[[], Any] = field(repr=False)
    obj: Any = field(default=None, repr=False)
    error: BaseException | None = field(default=None, repr=False)
    explicit_description: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    def load(self) -> Any:
        """Import the object on first use; a failure is remembered and re-raised as PluginLoadError."""
        if self.obj is None and self.error is None:
            try:
                self.obj = self.loader()
            except Exception as exc:  # a plugin may raise anything at import; isolate it
                self.error = exc
        if self.error is not None:
            raise PluginLoadError(self.kind, self.name, self.origin, self.target, self.error) from self.error
        return self.obj

    @property
    def description(self) -> str:
        """One line: the object's ``description`` attribute, else the first line of its docstring."""
        if self.explicit_description:
            return self.explicit_description
        if self.broken:
            return f"BROKEN: {type(self.error).__name__}: {self.error}"
        obj = self.load()
        text = getattr(obj, "description", None)
        if not isinstance(text, str) or not text:
            text = (getattr(obj, "__doc__", None) or "").strip()
        return text.splitlines()[0].strip() if text else ""

    @property
    def source(self) -> str:
        return f"{self.origin} {self.version}" if self.version else self.origin

    @property
    def for_tests(self) -> bool:
        """The part declares itself a test configuration (:func:`for_tests`); imports it to ask."""
        return bool(getattr(self.load(), FOR_TESTS_ATTRIBUTE, False))


FOR_TESTS_ATTRIBUTE = "for_tests"


def for_tests(part: T) -> T:
    """Declare ``part`` a test configuration (a tiny backbone, say): contract tests run it, ``all`` in a bench
    grid leaves it out. Metadata on the part, so no code branches on its name::

        @for_tests
        def my_backbone_test(checkpoint=None, pretrained=True, download=False): ...
    """
    setattr(part, FOR_TESTS_ATTRIBUTE, True)
    return part


class Registry(Generic[T]):
    """Names → parts of one kind, fed by the entry-point group ``group`` and by :meth:`register`."""

    def __init__(self, kind: str, group: str, plural: str | None = None):
        self.kind = kind
        self.group = group
        self.plural = plural or plural_of(kind)
        self._entries: dict[str, Entry] | None = None
        self._conflicts: dict[str, list[Entry]] = {}
        self._local: dict[str, Entry] = {}
        self._lock = threading.RLock()

    # -- discovery -----------------------------------------------------------------------------------
    def _discover(self) -> dict[str, Entry]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            builtins_only = os.environ.get(NO_PLUGINS_ENV, "") not in ("", "0")
            found: dict[str, list[Entry]] = {}
            for ep in sorted(metadata.entry_points(group=self.group), key=lambda e: (e.name, e.value)):
                dist = getattr(ep, "dist", None)
                origin = dist.metadata["Name"] if dist is not None else "<unknown distribution>"
                if builtins_only and _normalise(origin) != BUILTIN_DISTRIBUTION:
                    continue
                entry = Entry(ep.name, self.kind, origin, dist.version if dist is not None else None,
                              ep.value, loader=ep.load)
                same = found.setdefault(ep.name, [])
                # one distribution seen twice on sys.path (editable + site-packages) is not a conflict
                if not any(_normalise(e.origin) == _normalise(origin) and e.target == entry.target for e in same):
                    same.append(entry)
            entries: dict[str, Entry] = {}
            conflicts: dict[str, list[Entry]] = {}
            for name, candidates in found.items():
                if len(candidates) == 1:
                    entries[name] = candidates[0]
                else:
                    conflicts[name] = candidates
            for name, entry in self._local.items():  # register() already refused unwanted shadowing
                conflicts.pop(name, None)
                entries[name] = entry
            self._entries, self._conflicts = entries, conflicts
            return entries

    def refresh(self) -> None:
        """Forget what discovery found (e.g. after installing a plugin in this process)."""
        with self._lock:
            self._entries = None
            self._conflicts = {}

    # -- registration --------------------------------------------------------------------------------
    def register(self, name: str | None = None, obj: T | None = None, *, description: str | None = None,
                 replace: bool = False) -> Any:
        """Register ``obj`` under ``name`` in this process; without ``obj``, return a decorator.

        A name that an installed distribution already provides is refused (naming it) unless
        ``replace=True``, so a notebook can't silently shadow a plugin.
        """

        def add(target: T) -> T:
            key = name or getattr(target, "name", None) or getattr(target, "__name__", None)
            if not key:
                raise ValueError(f"Cannot register {target!r} as a {self.kind}: give it a name.")
            with self._lock:
                existing = self._discover().get(key)
                if existing is not None and not replace:
                    raise DuplicateNameError(self.kind, key, [existing.source, IN_PROCESS])
                qualified = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"
                entry = Entry(key, self.kind, IN_PROCESS, None, qualified, loader=lambda: target, obj=target,
                              explicit_description=description)
                self._local[key] = entry
                self._entries[key] = entry  # type: ignore[index]  # _discover() filled it
                self._conflicts.pop(key, None)
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove an in-process registration (tests use this to clean up)."""
        with self._lock:
            if name not in self._local:
                raise UnknownNameError(f"in-process {self.kind}", name, self._local, f"in-process {self.plural}")
            del self._local[name]
            self.refresh()

    # -- lookup --------------------------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        entries = self._discover()
        if name in self._conflicts:
            raise DuplicateNameError(self.kind, name, [e.source for e in self._conflicts[name]])
        if name not in entries:
            raise UnknownNameError(self.kind, name, entries, self.plural)
        return entries[name]

    def get(self, name: str) -> T:
        """The part registered as ``name``, imported on first use."""
        return self.entry(name).load()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._discover()

    def names(self, pattern: str = "*", *, include_broken: bool = False, for_tests: bool | None = None) -> list[str]:
        """Sorted names matching a shell wildcard (``"lora*"``). Known-broken plugins are left out.

        ``for_tests=True`` keeps only parts declared test configurations (:func:`for_tests`), ``False`` leaves
        them out; either imports the matching parts to ask them (one that fails to import is left out).
        """
        names = sorted(
            name for name, entry in self._discover().items()
            if fnmatch.fnmatchcase(name, pattern) and (include_broken or not entry.broken)
        )
        if for_tests is None:
            return names
        return [name for name in names if self._declares_for_tests(name) == for_tests]

    def _declares_for_tests(self, name: str) -> bool | None:
        try:
            return self.entry(name).for_tests
        except PluginLoadError:
            return None

    def entries(self, pattern: str = "*", *, load: bool = True) -> list[Entry]:
        """Every entry matching ``pattern``; with ``load`` each is imported so broken ones show as such."""
        selected = [e for n, e in sorted(self._discover().items()) if fnmatch.fnmatchcase(n, pattern)]
        if load:
            for entry in selected:
                with contextlib.suppress(PluginLoadError):
                    entry.load()
        return selected

    def broken(self) -> list[Entry]:
        """Entries that failed to import (only those that something tried to load)."""
        return [e for e in self._discover().values() if e.broken]

    def conflicts(self) -> dict[str, list[Entry]]:
        self._discover()
        return dict(self._conflicts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"


def _normalise(distribution: str) -> str:
    """A distribution name as PEP 503 compares them (``Adaptsam_PEFT`` = ``adaptsam-peft``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


backbones: Registry[Any] = Registry("backbone", "adaptsam.backbones")
adapters: Registry[Any] = Registry("adapter", "adaptsam.adapters")
policies: Registry[Any] = Registry("policy", "adaptsam.policies", "policies")
datasets: Registry[Any] = Registry("dataset", "adaptsam.datasets")

REGISTRIES: dict[str, Registry[Any]] = {
    "backbone": backbones,
    "adapter": adapters,
    "policy": policies,
    "dataset": datasets,
}


def installed_distributions() -> dict[str, str]:
    """Distributions that provide parts, by normalised name, each with its version (adaptsam's own included)."""
    found: dict[str, str] = {}
    for registry in REGISTRIES.values():
        for entry in registry._discover().values():
            if entry.origin != IN_PROCESS:
                found[_normalise(entry.origin)] = entry.version or "?"
    return found


def require_distributions(required: Iterable[str]) -> None:
    """Refuse, with one ConfigError, when a distribution in ``required`` provides no registered part.

    A bench spec lists the plugins its grid needs (``require: [adaptsam-peft]``): without this a missing plugin
    would only shrink ``adapters: all`` and the report would compare fewer methods without saying so
    (flake8's ``_check_required_plugins``).
    """
    wanted = {_normalise(name): name for name in required}
    if not wanted:
        return
    installed = installed_distributions()
    missing = sorted(name for key, name in wanted.items() if key not in installed)
    if missing:
        have = ", ".join(f"{name} {version}" for name, version in sorted(installed.items()))
        hint = "" if os.environ.get(NO_PLUGINS_ENV, "") in ("", "0") else f" ({NO_PLUGINS_ENV} is set: plugins ignored)"
        raise ConfigError(f"The bench requires plugins that are not installed: {', '.join(missing)}{hint}. "
                          f"Installed: {have}. Install them (pip install {' '.join(missing)}) or remove them from "
                          f"'require'.")


def refresh_all() -> None:
    """Forget every registry's discovery cache."""
    for registry in REGISTRIES.values():
        registry.refresh()
