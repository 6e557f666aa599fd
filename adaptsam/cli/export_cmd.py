"""``adaptsam export``: an adapted model as one verified ONNX graph at its resolution R."""

from __future__ import annotations

import argparse
from pathlib import Path

from adaptsam.cli._options import (
    DOWNLOAD_HELP,
    add_device_options,
    build_config,
    check_out_dir,
    device_from_args,
    fetch_checkpoints,
    weights_backbone,
)
from adaptsam.errors import ConfigError

ORDER = 70

DESCRIPTION = """\
Export an adapted model (adapter .safetensors file; merged into the base weights where the adapter
supports it) or, with --backbone, a zero-shot model, as ONE ONNX graph at the resolution R, then run it
with onnxruntime on seeded inputs and compare with the torch model: the command prints the largest
absolute difference and fails when it exceeds --tolerance (default 1e-3).

Graph (B fixed at export, default 1; K boxes per image, dynamic):
  input   image   float32 [B, 3, R, R]  RGB in [0, 1], degraded to longest side R and padded
                                        bottom/right; the backbone's normalisation is inside the graph
  input   boxes   float32 [B, K, 4]     x0, y0, x1, y1: pixel indices of the R×R image (x = column)
  output  logits  float32 [B, K, R, R]  mask logits at R (mask = logits > 0; resize logits, not masks)
  output  iou     float32 [B, K]        predicted IoU per mask
Prompt-free (class-prompt) adapters: input image only; outputs logits [B, C, R, R], iou [B, C] and
labels int64 [B, R, R] (class index per pixel).

Needs the 'export' extra: pip install 'adaptsam[export]' (onnx, onnxruntime).

examples:
  adaptsam export lora_r128.safetensors --onnx lora_r128.onnx
  adaptsam export --backbone lite_medsam --resolution 128 --onnx lite_medsam_128.onnx
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX at its resolution R, verified",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", metavar="WEIGHTS", help="adapter .safetensors file (or use --backbone)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write the graph")
    model = parser.add_argument_group("model (without WEIGHTS: the zero-shot backbone)")
    model.add_argument("--backbone", help="backbone name (with WEIGHTS: must match the file)")
    model.add_argument("--policy", help="resolution policy (default native without WEIGHTS)")
    model.add_argument("--resolution", type=int, metavar="R", help="input resolution R (default: design size)")
    model.add_argument("--checkpoint", metavar="PATH", help="backbone checkpoint, when it is not found automatically")
    model.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    add_device_options(model, precision=False)  # the tracing device
    graph = parser.add_argument_group("graph")
    graph.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset, 14..20 (default 17)")
    graph.add_argument("--batch-size", type=int, default=1, metavar="B",
                       help="images per run, fixed in the graph (default 1)")
    graph.add_argument("--no-merge", action="store_true", help="keep the adapter's layers instead of merging them")
    graph.add_argument("--tolerance", type=float, default=1e-3, metavar="T",
                       help="max |onnx - torch| accepted (default 1e-3)")
    graph.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptsam.export import ExportConfig, export_onnx
    from adaptsam.predict import load_model

    config = build_config(ExportConfig, "export", opset=args.opset, batch_size=args.batch_size,
                          merge=not args.no_merge, verify=not args.no_verify, tolerance=args.tolerance,
                          device=str(device_from_args(args)))
    if args.resolution is not None and args.resolution < 1:
        raise ConfigError(f"Expected --resolution to be a positive number of pixels (e.g. 128), got {args.resolution}.")
    onnx = Path(args.onnx)
    if onnx.is_dir():
        raise ConfigError(f"--onnx {onnx} is a folder; expected the path of the .onnx file to write.")
    check_out_dir(onnx.parent, force=True, flag="--onnx's folder")  # before the model is built
    if args.checkpoint is None:
        fetch_checkpoints(weights_backbone(args.weights, args.backbone), download=args.download)
    model = load_model(args.weights, backbone=args.backbone, policy=args.policy, resolution=args.resolution,
                       checkpoint=args.checkpoint)
    report = export_onnx(model, args.onnx, config)
    adapter = f" + {model.adapter.name}" if model.adapter is not None else " (zero-shot)"
    what = f"{model.info.name}{adapter}"
    merged = " (adapter merged)" if report.merged else ""
    print(f"wrote {report.path}: {what}{merged}, {model.policy.name} at R={model.resolution}, "
          f"{report.path.stat().st_size / 1e6:.1f} MB, {report.seconds:.1f} s")
    for kind, signature in (("input ", report.inputs), ("output", report.outputs)):
        for name, shape in signature.items():
            print(f"  {kind} {name:<7} {shape}")
    if report.max_abs_diff_logits is not None:
        print(f"onnxruntime vs torch: max abs diff {report.max_abs_diff_logits:.2e} (logits), "
              f"{report.max_abs_diff_iou:.2e} (iou); tolerance {config.tolerance:g}: OK")
    return 0
