"""``adaptsam list``: every registered part with its distribution; with ``-v`` also its description, version,
entry point, and plugins that fail to load.

Plain ``list`` reads package metadata only (entry points name each part and its distribution without
importing it), so it is instant and never imports torch; ``-v`` imports every part to describe it.
"""

from __future__ import annotations

import argparse
from typing import Any

from adaptsam.registry import REGISTRIES

ORDER = 10


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list", help="list registered backbones, adapters, policies and datasets",
        description="List every registered part (built-in or plugin) and the distribution it comes from, "
                    "without importing any. With -v: each part is imported to show its one-line description, "
                    "the distribution's version, the entry point, its options (default and help text) and "
                    "plugins that fail to load.")
    parser.add_argument("kind", nargs="?", choices=sorted(REGISTRIES), help="only this kind")
    parser.add_argument("pattern", nargs="?", default="*", help="shell wildcard on names, e.g. 'lora*'")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="import each part: description, distribution version, entry point, options (with "
                             "their defaults and help), load errors")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    problems = 0
    for kind in kinds:
        registry = REGISTRIES[kind]
        entries = registry.entries(args.pattern, load=args.verbose)
        conflicts = {n: c for n, c in registry.conflicts().items() if _matches(n, args.pattern)}
        print(f"{registry.plural} ({registry.group}):")
        if not entries and not conflicts:
            print("  (none)")
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            if args.verbose:
                print(f"  {entry.name:<{width}}  [{entry.source}]  {entry.description}")
                print(f"  {'':<{width}}  entry point: {entry.target}")
                for line in _option_lines(entry):
                    print(f"  {'':<{width}}    {line}")
            else:
                print(f"  {entry.name:<{width}}  [{entry.origin}]")
            problems += entry.broken
        for name, candidates in sorted(conflicts.items()):
            sources = ", ".join(c.source for c in candidates)
            print(f"  {name:<{width}}  CONFLICT: registered by {sources}")
            problems += 1
    if not args.verbose:
        print("\n(adaptsam list -v imports each part: descriptions, versions, entry points, load errors)")
    if problems:
        print(f"\n{problems} plugin problem(s) above; the other parts work. Set ADAPTSAM_NO_PLUGINS=1 to use "
              f"built-ins only.")
    return 0


def _option_lines(entry: Any) -> list[str]:
    """``name = default  help`` for each option of a loaded part: an adapter's ``config_class`` fields, or a
    policy's own dataclass fields (help text from ``help_field`` metadata, where the part gives one)."""
    import dataclasses

    if entry.broken or entry.obj is None:
        return []
    config = getattr(entry.obj, "config_class", entry.obj)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return []
    lines = []
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        help_text = f.metadata.get("help", "")
        lines.append(f"option {f.name} = {default}" + (f"  {help_text}" if help_text else ""))
    return lines


def _matches(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)
