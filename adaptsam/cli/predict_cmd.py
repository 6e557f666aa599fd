"""``adaptsam predict``: masks, overlays and a JSON summary for images of any size."""

from __future__ import annotations

import argparse
import sys

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

ORDER = 60

DESCRIPTION = """\
Segment images with an adapted model (an adapter .safetensors file: backbone, policy, resolution R and
weights come from its metadata) or, without one, with the zero-shot --backbone at --resolution.

Each image is degraded like the bench's data (longest side R, padded to R×R); prompts are mapped into
that frame; logits are cropped and resized bilinearly back to the image's size before thresholding.

Prompts (--prompts FILE, JSON, keys = image file names; coordinates in original-image pixels):
  {"img1.jpg": {"boxes": [[x0, y0, x1, y1], ...], "points": [[x, y, 1], ...]}}
  one mask per box; points are [x, y, label] (1 foreground, 0 background): a flat list is one object's
  points (or refines the single box), a list of lists is one point set per object/box.
Prompt-free (class-prompt) adapters need no prompts file and write class-index masks.

Outputs in --out DIR:
  masks/<image>_<k>.png   binary 0/255 mask of prompt k, at the image's size (class prompts:
                          masks/<image>.png holding class indices)
  overlays/<image>.png    the image with masks filled and outlined in one colour each, prompts drawn
  summary.json            per mask: area (pixels), score (predicted IoU), class, kept (after NMS); failures
  coco_results.json       with --format coco: the kept masks as COCO RLE results (+ coco_images.json)

An image that cannot be read or has no prompt entry is reported by name and skipped; the others are
processed, and the command then exits with status 1 saying how many failed.

examples:
  adaptsam predict lora_r128.safetensors images/ --prompts boxes.json --out preds
  adaptsam predict --backbone lite_medsam --resolution 128 'data/*.jpg' --prompts boxes.json --out zs
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="segment images (any size) with an adapter file or a zero-shot backbone",
        usage="adaptsam predict [WEIGHTS] INPUT [INPUT ...] --out DIR [--prompts FILE] [options]",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="WEIGHTS/INPUT",
                        help="an adapter .safetensors file (leave it out with --backbone), then images, folders or "
                             "glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--prompts", metavar="FILE", help="JSON prompts file (see above); not for class prompts")
    parser.add_argument("--format", choices=("png", "coco"), default="png",
                        help="coco: also write coco_results.json (COCO RLE results of the PNG masks) and "
                             "coco_images.json (its images, for pycocotools' COCO().loadRes); needs pycocotools")
    model = parser.add_argument_group("model (without WEIGHTS: the zero-shot backbone)")
    model.add_argument("--backbone", help="backbone name, e.g. lite_medsam (with WEIGHTS: must match the file)")
    model.add_argument("--policy", help="resolution policy (default native without WEIGHTS)")
    model.add_argument("--resolution", type=int, metavar="R", help="input resolution R (default: design size)")
    model.add_argument("--checkpoint", metavar="PATH", help="backbone checkpoint, when it is not found automatically")
    add_device_options(model, precision=False)
    model.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    post = parser.add_argument_group("post-processing (areas in original-image pixels)")
    post.add_argument("--threshold", type=float, default=0.0, metavar="LOGIT",
                      help="logit threshold (default 0 = probability 0.5)")
    post.add_argument("--min-area", type=int, default=0, metavar="PX", help="remove components smaller than PX")
    post.add_argument("--max-hole", type=int, default=0, metavar="PX", help="fill holes smaller than PX")
    post.add_argument("--keep-largest", action="store_true", help="keep only each mask's largest component")
    post.add_argument("--nms-iou", type=float, metavar="IOU",
                      help="drop a mask overlapping a higher-scored one by more than IOU (e.g. 0.7)")
    post.add_argument("--connectivity", type=int, choices=(1, 2), default=1,
                      help="1: 4-connected components (default), 2: 8-connected")
    post.add_argument("--class-threshold", type=float, metavar="P",
                      help="class prompts: background below this class probability (default: the adapter's)")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--batch-size", type=int, default=4, metavar="N", help="images encoded together (default 4)")
    run_group.add_argument("--alpha", type=float, default=0.45, metavar="A", help="overlay fill opacity (default 0.45)")
    run_group.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def split_sources(sources: list[str], backbone: str | None) -> tuple[str | None, list[str]]:
    """(weights, inputs): the first source is the adapter file when it is a .safetensors file."""
    if sources and sources[0].lower().endswith(".safetensors"):
        return sources[0], sources[1:]
    if backbone is None:
        raise ConfigError("predict: the first argument must be an adapter .safetensors file, or pass --backbone NAME "
                          "(with --resolution R) for the zero-shot model; got "
                          f"{sources[0] if sources else 'nothing'!r}.")
    return None, sources


def run(args: argparse.Namespace) -> int:
    from adaptsam.postprocess import PostprocessConfig
    from adaptsam.predict import PredictConfig, Predictor, describe_model, load_model, predict_paths

    weights, inputs = split_sources(args.sources, args.backbone)
    if not inputs:
        raise ConfigError("predict: no INPUT given: name images, folders or glob patterns after the adapter file.")
    post = build_config(PostprocessConfig, "post-processing", threshold=args.threshold,
                        min_component_area=args.min_area, max_hole_area=args.max_hole,
                        keep_largest=args.keep_largest, nms_iou=args.nms_iou, connectivity=args.connectivity,
                        class_threshold=args.class_threshold)
    config = build_config(PredictConfig, "predict", batch_size=args.batch_size, postprocess=post,
                          overlay_alpha=args.alpha, progress=not args.quiet)
    if args.resolution is not None and args.resolution < 1:
        raise ConfigError(f"Expected --resolution to be a positive number of pixels (e.g. 128), got {args.resolution}.")
    check_out_dir(args.out, force=True)  # a file or an uncreatable folder fails before the model is built
    if args.checkpoint is None:
        fetch_checkpoints(weights_backbone(weights, args.backbone), download=args.download)
    model = load_model(weights, backbone=args.backbone, policy=args.policy, resolution=args.resolution,
                       checkpoint=args.checkpoint, device=device_from_args(args))
    result = predict_paths(Predictor(model, config), inputs, args.out, args.prompts, describe_model(model, weights))
    if args.format == "coco":
        from adaptsam.coco_results import write_coco_results

        write_coco_results(args.out)
    total = result.processed + len(result.failures)
    for _, message in result.failures:
        print(f"adaptsam predict: failed: {message}", file=sys.stderr)
    print(f"{result.processed} of {total} image(s) predicted; masks, overlays and {result.summary_path} in "
          f"{args.out}")
    if result.failures:
        print(f"adaptsam predict: {len(result.failures)} of {total} image(s) failed (listed above and in "
              f"{result.summary_path}).", file=sys.stderr)
        return 1
    return 0
