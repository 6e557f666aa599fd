"""The ``adaptsam`` command line: one module per command, each adding its own subparser.

    adaptsam list [-v] [KIND] [PATTERN]     what is registered (built-ins and plugins), and what is broken
    adaptsam --version
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from adaptsam import __version__

COMMAND_SUFFIX = "_cmd"


def command_modules() -> list[str]:
    """Every ``adaptsam/cli/*_cmd.py``: adding a command is adding a file, with no list to edit.

    Each module defines ``add_parser(subparsers)`` and an optional ``ORDER`` (smaller first in ``--help``).
    """
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith(COMMAND_SUFFIX)]
    modules = [importlib.import_module(f"adaptsam.cli.{name}") for name in names]
    return [m.__name__ for m in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptsam",
        description="Which way of adapting Segment Anything works best on low-resolution images? "
                    "Build, train, evaluate and benchmark SAM backbones × adapters × resolution policies.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"adaptsam {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    import warnings

    from adaptsam.errors import AdaptsamError, Terminated

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.run(args) or 0)
        except AdaptsamError as exc:  # bad input: one line (a bug in adaptsam still shows its traceback)
            print(f"adaptsam: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("adaptsam: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print("adaptsam: terminated (SIGTERM); finished work is stored, run the command again to resume",
                  file=sys.stderr)
            return 143


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """User-facing warnings (adaptsam's data handling said out loud) as one ``adaptsam: warning:`` line each;
    library deprecation noise keeps Python's format."""
    stream = file if file is not None else sys.stderr
    if issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning):
        print(f"adaptsam: warning: {_one_line(message)}", file=stream)
    else:
        import warnings

        stream.write(warnings.formatwarning(message, category, filename, lineno, line))
