"""``adaptsam import labelme SRC DST``: convert LabelMe JSON polygons into adaptsam's dataset layout."""

from __future__ import annotations

import argparse

ORDER = 60


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="import annotations into adaptsam's dataset layout (LabelMe, COCO)",
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
    coco = formats.add_parser(
        "coco", help="COCO instances JSON (polygons and RLE; needs pycocotools: pip install adaptsam[coco])",
        description="Decode COCO instance masks (pycocotools) into class-index masks: where instances overlap the "
                    "smaller one is on top; iscrowd regions are 255 (ignore); images without annotations are kept "
                    "as background unless --drop-empty. Several JSON files (comma-separated, e.g. "
                    "train.json,val.json) become one split each, named after the file; one file gets a seeded "
                    "train/test split.")
    coco.add_argument("instances", metavar="INSTANCES.json", help="COCO file(s), comma-separated for several splits")
    coco.add_argument("images", metavar="IMAGES_DIR", help="folder holding the images named by images[].file_name")
    coco.add_argument("dst", metavar="OUT", help="new or empty output folder")
    coco.add_argument("--classes", choices=("category", "supercategory", "binary"), default="category",
                      help="what a mask value means (default category: COCO's order)")
    coco.add_argument("--categories", help="comma-separated category names to keep (default: all)")
    coco.add_argument("--min-area", type=int, default=0, metavar="N", help="leave out instances under N pixels")
    coco.add_argument("--drop-empty", action="store_true", help="leave out images without annotations")
    coco.add_argument("--test-fraction", type=float, default=0.2, help="one file: share of images in test")
    coco.add_argument("--seed", type=int, default=0, help="one file: seed of the split")
    coco.set_defaults(run=run_coco)


def run_labelme(args: argparse.Namespace) -> int:
    from adaptsam.data.labelme import import_labelme

    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else None
    out = import_labelme(args.src, args.dst, labels=labels, test_fraction=args.test_fraction, seed=args.seed)
    print(f"wrote {out}")
    return 0


def run_coco(args: argparse.Namespace) -> int:
    from adaptsam.data.coco import import_coco

    files = [name.strip() for name in args.instances.split(",") if name.strip()]
    categories = [name.strip() for name in args.categories.split(",") if name.strip()] if args.categories else None
    out = import_coco(files, args.images, args.dst, classes=args.classes, categories=categories,
                      min_area=args.min_area, drop_empty=args.drop_empty, train_fraction=1.0 - args.test_fraction,
                      seed=args.seed)
    print(f"wrote {out}")
    return 0
