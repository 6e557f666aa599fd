"""``adaptsam list``: every registered part with its origin and description; broken plugins and clashes."""

from __future__ import annotations

import argparse

from adaptsam.registry import REGISTRIES

ORDER = 10


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list", help="list registered backbones, adapters, policies and datasets",
        description="List every registered part (built-in or plugin). With -v: distribution, version, entry "
                    "point, and plugins that failed to load.")
    parser.add_argument("kind", nargs="?", choices=sorted(REGISTRIES), help="only this kind")
    parser.add_argument("pattern", nargs="?", default="*", help="shell wildcard on names, e.g. 'lora*'")
    parser.add_argument("-v", "--verbose", action="store_true", help="show origin versions, targets and errors")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    problems = 0
    for kind in kinds:
        registry = REGISTRIES[kind]
        entries = registry.entries(args.pattern)
        conflicts = {n: c for n, c in registry.conflicts().items() if _matches(n, args.pattern)}
        print(f"{registry.plural} ({registry.group}):")
        if not entries and not conflicts:
            print("  (none)")
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            origin = entry.source if args.verbose else entry.origin
            print(f"  {entry.name:<{width}}  [{origin}]  {entry.description}")
            if args.verbose:
                print(f"  {'':<{width}}  entry point: {entry.target}")
            problems += entry.broken
        for name, candidates in sorted(conflicts.items()):
            sources = ", ".join(c.source for c in candidates)
            print(f"  {name:<{width}}  CONFLICT: registered by {sources}")
            problems += 1
    if problems:
        print(f"\n{problems} plugin problem(s) above; the other parts work. Set ADAPTSAM_NO_PLUGINS=1 to use "
              f"built-ins only.")
    return 0


def _matches(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)
