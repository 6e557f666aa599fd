"""``adaptsam report OUT``: rewrite report.md, results.csv and the plots from a bench's store."""

from __future__ import annotations

import argparse

ORDER = 21


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write report.md, results.csv and plots from a bench folder",
        description="Read OUT/results.sqlite and write OUT/report.md (tables ranked by Dice per dataset, with the "
                    "zero-shot reference, confidence intervals and speed-ups vs upsample), OUT/results.csv and "
                    "OUT/dice_vs_speed.png, dice_vs_params.png, dice_vs_resolution.png.")
    parser.add_argument("out", help="the bench's output folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptsam.bench.report import write_report

    print(f"report: {write_report(args.out)}")
    return 0
