"""``adaptsam bench``: run a grid of cells (resumable) and write the report."""

from __future__ import annotations

import argparse

ORDER = 20
GRID_FLAGS = ("backbones", "adapters", "policies", "resolutions", "data", "shots", "seeds", "steps", "batch_size",
              "lr", "adapter_lr", "prompt", "eval_limit", "throughput_batch", "timing_rounds")
# how cells run and are timed, not what they are (not in cell keys)
HOW_FLAGS = ("device", "precision", "compile", "timing_threads", "jobs")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from adaptsam.bench.spec import PROMPTS

    parser = subparsers.add_parser(
        "bench", help="cross-evaluate backbones × adapters × policies × resolutions (the main job)",
        description="Train every adapter on a fixed budget, evaluate Dice/IoU at R, measure images/s, parameters "
                    "and peak memory, store every cell in OUT/results.sqlite (a killed bench resumes), then write "
                    "OUT/report.md, OUT/results.csv and PNG plots. Starts from a preset (default: quick) that "
                    "--config YAML and the grid flags override. 'all' expands to everything registered, plugins "
                    "included.",
        epilog="examples:\n  adaptsam bench                          # quick preset, minutes on 2 CPU cores\n"
               "  adaptsam bench --backbones vit_t,lite_medsam --adapters all --policies native,upsample "
               "--resolutions 64,128 --data kvasir_seg --steps 200 --seeds 0,1\n"
               "  adaptsam bench --preset full --executor ray --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", help="quick (default) or full")
    parser.add_argument("--config", help="YAML bench spec (keys: backbones, adapters, policies, resolutions, "
                                         "datasets, shots, seeds, steps, exclude, ...)")
    grid = parser.add_argument_group("grid (comma-separated lists; override the preset)")
    grid.add_argument("--backbones")
    grid.add_argument("--adapters", help="names or 'all'")
    grid.add_argument("--policies")
    grid.add_argument("-R", "--resolutions", help="input resolutions R, e.g. 64,128")
    grid.add_argument("--data", help="datasets: registered names or folder paths")
    grid.add_argument("--shots", help="training images per class; 'all' for the whole split")
    grid.add_argument("--seeds")
    grid.add_argument("--steps", type=int)
    grid.add_argument("--batch-size", type=int)
    grid.add_argument("--lr", type=float)
    grid.add_argument("--adapter-lr", type=float)
    grid.add_argument("--prompt", choices=PROMPTS, help="prompt of promptable adapters; none for prompt-free ones")
    grid.add_argument("--eval-limit", type=int, help="evaluate the first N test images")
    grid.add_argument("--throughput-batch", type=int)
    grid.add_argument("--timing-rounds", type=int, help="interleaved rounds of the timing phase (default 5)")
    grid.add_argument("--timing-threads", type=int,
                      help="intra-op threads of the timing phase (default 1: per-core figures, repeatable on a busy "
                           "machine; 0: torch's default, every core)")
    grid.add_argument("--compile", action="store_true", default=None,
                      help="also time torch.compile of every inference graph (its own column; compiling takes "
                           "minutes per graph on a CPU)")
    grid.add_argument("--random-init", action="store_true", help="random backbone weights (marked untrained)")
    grid.add_argument("--require", help="plugin distributions the grid needs (e.g. adaptsam-peft): stop at once "
                                        "when one is not installed")
    run = parser.add_argument_group("running")
    run.add_argument("--out", default="bench-out", help="output folder (default: bench-out)")
    run.add_argument("--executor", choices=("local", "ray"), default="local")
    run.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--jobs", type=int, help="cells the local executor runs at once, each in its own worker on "
                                              "cores/jobs threads (default 1); speed still comes from the timing "
                                              "phase, which runs alone")
    from adaptsam.cli._options import add_device_options

    add_device_options(run, default=None)  # --device, --precision/--no-bf16: how cells run (not part of their keys)
    run.add_argument("--gpus-per-cell", type=float, default=0.0,
                     help="GPUs a Ray task needs per cell (fractions such as 0.25 share a GPU; default 0)")
    run.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    run.add_argument("--retime", action="store_true",
                     help="time every done cell again (a new timing run, which the report then shows), e.g. on a "
                          "quieter machine")
    run.add_argument("--dry-run", action="store_true", help="list the cells and their status, run nothing")
    run.add_argument("--no-report", action="store_true")
    run.add_argument("--wandb", action="store_true", help="log every cell to Weights & Biases (offline unless "
                                                           "WANDB_API_KEY/WANDB_MODE say otherwise)")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--download", action="store_true",
                     help="fetch missing official weights of the grid's backbones first (sha256-verified)")
    parser.set_defaults(run=run_bench_command)


def spec_from_args(args: argparse.Namespace):
    from adaptsam.bench.spec import preset_spec, spec_from_mapping, spec_from_yaml

    spec = preset_spec(args.preset)
    if args.config:
        spec = spec_from_yaml(args.config, spec)
    values = {("datasets" if flag == "data" else flag): getattr(args, flag) for flag in GRID_FLAGS
              if getattr(args, flag, None) is not None}
    if args.random_init:
        values["pretrained"] = False
    spec = spec_from_mapping(values, spec) if values else spec
    how = {name: getattr(args, name) for name in HOW_FLAGS if getattr(args, name, None) is not None}
    if args.require:
        how["require"] = tuple(name.strip() for name in args.require.split(",") if name.strip())
    if how:  # how the cells run, not what they are: the preset keeps its name
        from dataclasses import replace

        from adaptsam.devices import resolve_device

        resolve_device(how.get("device", "auto"))  # "cuda" without a GPU fails now, before any cell runs
        spec = replace(spec, **how)
    return spec


def run_bench_command(args: argparse.Namespace) -> int:
    from adaptsam.bench.executors import make_executor
    from adaptsam.bench.runner import STORE_NAME, run_bench
    from adaptsam.cli._options import check_out_dir, fetch_checkpoints

    if not args.dry_run:  # another bench on this folder: say so at once, before building the grid
        from adaptsam.bench.store import BenchLock

        BenchLock.check_free(args.out)
    spec = spec_from_args(args)
    cells = spec.cells()
    if not args.dry_run:  # a bench resumes in its folder: only a file or an uncreatable folder is refused
        check_out_dir(args.out, force=True)
    print(f"adaptsam bench: preset {spec.name}, {len(cells)} cells → {args.out}")
    if spec.note:
        print(f"  {spec.note}")
    if args.dry_run:
        from pathlib import Path

        from adaptsam.bench.store import ResultStore

        statuses = {}
        if (Path(args.out) / STORE_NAME).is_file():
            with ResultStore(Path(args.out) / STORE_NAME) as store:
                statuses = store.statuses()
        for cell in cells:
            print(f"  {statuses.get(cell.key, 'new'):8} {cell.key}  {cell.label}")
        return 0
    _check_datasets(spec.datasets)
    fetch_checkpoints(spec.backbones, download=args.download and spec.pretrained)
    on_result = None
    if args.wandb:
        from adaptsam.bench.tracking import WandbCellLogger

        on_result = WandbCellLogger(group=spec.name)
    executor = make_executor(args.executor, args.address, gpus_per_cell=args.gpus_per_cell)
    summary = run_bench(spec, args.out, executor=executor,
                        retry_failed=args.retry_failed, progress=not args.no_progress, report=not args.no_report,
                        on_result=on_result, retime=args.retime)
    done = ", ".join(f"{v} {k}" for k, v in sorted(summary.statuses.items()))
    print(f"{summary.total} cells ({summary.ran} run now): {done}")
    if summary.report:
        print(f"report: {summary.report}")
    return 1 if summary.statuses.get("failed") else 0


def _check_datasets(names: tuple[str, ...]) -> None:
    """Every dataset of the grid opens (train and test splits) before the first cell runs: a missing folder or
    split is one error now, not a failed row in every cell that uses it."""
    from adaptsam.data import open_dataset

    for name in names:
        for split in ("train", "test"):
            open_dataset(name, split)
