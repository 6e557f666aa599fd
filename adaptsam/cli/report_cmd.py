"""``adaptsam report OUT``: rewrite report.md, results.csv and the plots from a bench's store."""

from __future__ import annotations

import argparse

ORDER = 21


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write report.md, report.html, results.csv and plots from a bench folder",
        description="Read OUT/results.sqlite and write OUT/report.html (self-contained: sortable, filterable, no "
                    "network) and OUT/report.md (tables ranked by Dice per dataset, with the "
                    "zero-shot reference, confidence intervals and speed-ups vs upsample), OUT/results.csv and "
                    "OUT/dice_vs_speed.png, dice_vs_params.png, dice_vs_resolution.png.")
    parser.add_argument("out", help="the bench's output folder")
    parser.add_argument("--json", action="store_true",
                        help="also print the report as JSON on stdout (per dataset the ranked rows with best/Pareto "
                             "marks, each cell's config, metrics, timings, environment and error) for tools")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptsam.bench.report import write_report

    path = write_report(args.out)
    if args.json:
        from adaptsam.bench.html_report import report_json

        print(report_json(args.out))
    else:
        print(f"report: {path} (and report.html)")
    return 0
