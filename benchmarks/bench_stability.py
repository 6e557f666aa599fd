"""Do the bench's cost columns survive a rerun? Run one preset twice, into two folders, and compare per cell.

    python benchmarks/bench_stability.py                       # quick preset twice (about 2 × 8 minutes on 2 cores)
    python benchmarks/bench_stability.py --busy                # the same with one core kept busy meanwhile
    python benchmarks/bench_stability.py --compare A B         # compare two finished bench folders
    python benchmarks/bench_stability.py --busy --against A    # one busy run, compared with quiet folder A
    python benchmarks/bench_stability.py --busy --retime A     # A's cells timed again while one core is busy

Prints, per cell, each run's speed ratio to its reference graph and its peak training / inference memory,
then the largest relative disagreement of each column; exits 1 when a column disagrees by more than its
tolerance (ratios ±10%, ±15% with --busy; memory ±10%). Memory below 5 MB is compared in absolute terms
(±0.5 MB): a relative figure of a near-zero peak is noise by definition.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adaptsam.bench.store import STORE_NAME, ResultStore

COLUMNS = (("speed_ratio", "speed"), ("train_mem_mb", "metrics"), ("infer_mem_mb", "metrics"))
SMALL_MB = 5.0


def run_preset(out: Path, preset: str, extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "adaptsam", "bench", "--preset", preset, "--out", str(out),
                    "--no-progress", *extra], check=True)
    return time.perf_counter() - start


def figures(folder: Path) -> dict[str, dict[str, float]]:
    with ResultStore(folder / STORE_NAME) as store:
        rows = [r for r in store.rows() if r.status == "done"]
    return {r.label: {name: getattr(r, where).get(name) for name, where in COLUMNS} for r in rows}


def disagreement(a: float | None, b: float | None, column: str) -> float:
    if a is None and b is None:  # n/a in both runs (e.g. no training memory for a cell that trains nothing)
        return 0.0
    if a is None or b is None:
        return float("inf")
    if column.endswith("_mb") and max(a, b) < SMALL_MB:
        return 0.0 if abs(a - b) <= 0.5 else float("inf")
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def compare(first: Path, second: Path, ratio_tolerance: float, memory_tolerance: float = 0.10) -> bool:
    a, b = figures(first), figures(second)
    labels = sorted(set(a) & set(b))
    print("| cell | ratio run 1 | ratio run 2 | train MB 1 | train MB 2 | infer MB 1 | infer MB 2 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    worst = {name: 0.0 for name, _ in COLUMNS}
    for label in labels:
        values = []
        for name, _ in COLUMNS:
            x, y = a[label][name], b[label][name]
            worst[name] = max(worst[name], disagreement(x, y, name))
            values += ["n/a" if x is None else f"{x:.3g}", "n/a" if y is None else f"{y:.3g}"]
        print(f"| {label} | " + " | ".join(values) + " |")
    ok = True
    for name, _ in COLUMNS:
        tolerance = ratio_tolerance if name == "speed_ratio" else memory_tolerance
        passed = worst[name] <= tolerance
        ok &= passed
        print(f"{name}: largest disagreement {worst[name]:.1%} (tolerance ±{tolerance:.0%}) "
              f"{'ok' if passed else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--busy", action="store_true", help="keep one core busy with a spin loop during both runs")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two bench folders")
    parser.add_argument("--against", type=Path, metavar="A",
                        help="run the preset once and compare it with the finished bench folder A")
    parser.add_argument("--retime", type=Path, metavar="A",
                        help="copy the finished bench folder A and run only its timing phase again (adaptsam bench "
                             "--retime), then compare: what a busy machine does to the ratios, without training "
                             "again (memory is counted during training and can't change)")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temporary folder)")
    args, extra = parser.parse_known_args()
    tolerance = 0.15 if args.busy else 0.10
    if args.compare:
        return 0 if compare(*args.compare, tolerance) else 1
    root = args.out or Path(tempfile.mkdtemp(prefix="adaptsam-stability-"))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    if args.retime:
        shutil.copytree(args.retime, root / "retimed", ignore=shutil.ignore_patterns("*.lock"))
        extra = [*extra, "--retime"]
    runs = [root / "retimed"] if args.retime else [root / "run"] if args.against else [root / "run1", root / "run2"]
    try:
        walls = [run_preset(folder, args.preset, extra) for folder in runs]
    finally:
        if spinner is not None:
            spinner.kill()
    print(f"wall time: {', '.join(f'{f.name} {w:.0f} s' for f, w in zip(runs, walls))} ({os.cpu_count()} cores"
          f"{', one kept busy' if args.busy else ''}); folders under {root}")
    first, second = (args.against or args.retime, runs[0]) if args.against or args.retime else runs
    return 0 if compare(first, second, tolerance) else 1


if __name__ == "__main__":
    sys.exit(main())
