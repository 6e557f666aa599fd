"""``adaptsam perf [--quick]``: measure the performance targets of DESIGN §7 and print the table."""

from __future__ import annotations

import argparse

ORDER = 30


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "perf", help="measure the performance targets (ratios within one run) and print pass/fail",
        description="Time the hot paths against each other in one process (interleaved rounds, best round "
                    "each) and print one row per target with the measured ratio and pass/fail; the last line "
                    "is 'targets met: N/M'. Exit status 0 either way (a missed target is a finding).")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, no bf16 note: about 4 minutes on 2 CPU cores")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--device", default="cpu",
                        help="where models are timed: cpu (default: the targets are CPU targets), cuda, cuda:N or "
                             "auto; the sgemm-efficiency rows always describe the CPU")
    parser.add_argument("--download", action="store_true",
                        help="fetch missing official weights of the timed backbones (vit_b, lite_medsam) first; "
                             "speed does not need them, the window note's Dice does")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import sys
    import time

    import torch

    from adaptsam.bench.measure import environment
    from adaptsam.bench.perf import PerfConfig, PerfRun, format_table
    from adaptsam.cli._options import fetch_checkpoints
    from adaptsam.errors import ConfigError

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"Expected --threads to be at least 1, got {args.threads}.")
    from adaptsam.devices import resolve_device

    device = str(resolve_device(args.device))  # an unusable device fails before anything is measured
    fetch_checkpoints(["vit_b", "lite_medsam"], download=args.download)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment()
    print(f"perf: {env['cpu']}, torch {env['torch']}, {torch.get_num_threads()} threads"
          f"{' (quick)' if args.quick else ''}", file=sys.stderr)
    start = time.perf_counter()
    perf = PerfRun(dataclasses.replace(PerfConfig.for_mode(args.quick), device=device))
    results = perf.run(progress=lambda label: print(f"  measuring {label} …", file=sys.stderr, flush=True))
    peak = perf.sgemm_peak()
    print(f"sgemm peak at the start: {peak.gflops:.0f} GFLOP/s at {peak.shape} on {peak.threads} threads "
          f"(efficiency rows re-probe it each round); {time.perf_counter() - start:.0f} s in all")
    for note in perf.notes:
        print(f"note: {note}")
    print(format_table(results))  # its last line: targets met: N/M
    if args.json:
        rows = [{"figure": r.target.figure, "target": r.target.describe(), "measured": r.measured,
                 "passed": r.passed, "detail": r.detail} for r in results]
        with open(args.json, "w") as handle:
            json.dump({"environment": env, "sgemm_peak_gflops": peak.gflops, "rows": rows}, handle, indent=2)
    return 0
