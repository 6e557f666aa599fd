"""``adaptsam import labelme SRC DST``: convert LabelMe JSON polygons into adaptsam's dataset layout."""

from __future__ import annotations

import argparse

ORDER = 60


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="import annotations into adaptsam's dataset layout (LabelMe)",
        description="Convert annotations into images/, masks/, splits/ and labels.txt, the folder layout every "
                    "adaptsam command reads.")
    formats = parser.add_subparsers(title="formats", metavar="FORMAT", required=True)
    labelme = formats.add_parser(
        "labelme", help="a folder of LabelMe JSON files (polygons, rectangles)",
        description="Rasterise LabelMe polygons and rectangles (a pixel belongs to a polygon when its centre is "
                    "inside it; later shapes paint over earlier ones) into class-index masks, copy the images, "
                    "write labels.txt (0 = background) and a seeded train/test split.")
    labelme.add_argument("src", help="folder with LabelMe *.json files (and their images)")
    labelme.add_argument("dst", help="new or empty output folder")
    labelme.add_argument("--labels", help="comma-separated label names in class-index order (default: sorted)")
    labelme.add_argument("--test-fraction", type=float, default=0.2, help="share of images in splits/test.txt")
    labelme.add_argument("--seed", type=int, default=0)
    labelme.set_defaults(run=run_labelme)


def run_labelme(args: argparse.Namespace) -> int:
    from adaptsam.data.labelme import import_labelme

    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else None
    out = import_labelme(args.src, args.dst, labels=labels, test_fraction=args.test_fraction, seed=args.seed)
    print(f"wrote {out}")
    return 0
