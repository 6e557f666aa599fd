"""``adaptsam split DIR``: write a seeded (stratified) train/val/test split to ``DIR/splits/``."""

from __future__ import annotations

import argparse

ORDER = 61


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "split", help="write a seeded train/val/test split of a dataset folder to its splits/",
        description="Shuffle the ids of DIR/images that have a mask in DIR/masks with --seed and write "
                    "splits/train.txt, splits/test.txt (and splits/val.txt with --val > 0). With labels.txt and "
                    "more than one class, every class gets an image in train first. A folder without splits/ "
                    "draws the same split by itself (train 0.8, val 0, seed 0); this command fixes it on disk.")
    parser.add_argument("dir", help="dataset folder holding images/ and masks/")
    parser.add_argument("--train", type=float, default=0.8, help="share of images in train (default 0.8)")
    parser.add_argument("--val", type=float, default=0.0, help="share of images in val (default 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing split files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptsam.data.split import SplitConfig, folder_split, write_split

    split = folder_split(args.dir, SplitConfig(train=args.train, val=args.val, seed=args.seed))
    paths = write_split(args.dir, split, overwrite=args.overwrite)
    print(f"split {args.dir} ({split.describe()}): wrote {', '.join(str(p) for p in paths)}")
    return 0
