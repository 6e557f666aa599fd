"""``adaptsam ncut``: normalized-cut pictures and CKA numbers of encoder features across resolutions."""

from __future__ import annotations

import argparse
import json

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

ORDER = 80

DESCRIPTION = """\
Show where low resolution breaks a backbone's representation. A few images (centre-cropped to squares)
are encoded at each resolution R under each policy (native: R×R into the encoder; upsample: resized to
the design size first). Per encoder block, the tokens of all settings and images are embedded by one
joint normalized cut (ncut-pytorch) and coloured: the same colour means the same kind of token in every
panel. Next to the pictures, linear CKA of each setting's tokens with native at the largest R says how
much of the representation survives (1 = unchanged).

Writes to --out DIR:
  ncut_grid.png   rows: the inputs, then blocks (last block of each stage, and the image embedding);
                  column groups: settings (policy, R), one panel per image; titles: token grid and CKA
  cka.csv         block, policy, resolution, token_grid, cka_vs_reference
  cka.md          the same as a blocks × settings table
  summary.json    the numbers, with the run time

Needs the 'ncut' extra: pip install 'adaptsam[ncut]' (ncut-pytorch).

examples:
  adaptsam ncut --backbone lite_medsam --images data/kvasir_seg/images --resolutions 64,128,256 --out ncut
  adaptsam ncut --weights lora_r128.safetensors --images some/ --max-images 4 --policies native --out ncut_lora
"""


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 64,128,256; got {text!r}") from exc


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ncut", help="NCut pictures + CKA of encoder features across resolutions",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", help="backbone name, e.g. lite_medsam (optional with --weights)")
    parser.add_argument("--weights", metavar="FILE", help="adapter .safetensors file to load at every setting")
    parser.add_argument("--checkpoint", metavar="PATH", help="backbone checkpoint, when it is not found automatically")
    parser.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    add_device_options(parser, precision=False)  # where the encoder runs; the cut itself is on the CPU
    parser.add_argument("--images", required=True, nargs="+", metavar="INPUT",
                        help="image files, folders or glob patterns (the first --max-images are used)")
    parser.add_argument("--max-images", type=int, default=4, metavar="N", help="images to use (default 4)")
    parser.add_argument("--resolutions", type=_ints, default=(64, 128, 256), metavar="R,R,...",
                        help="input resolutions (default 64,128,256)")
    parser.add_argument("--policies", type=_names, default=("native", "upsample"), metavar="P,P,...",
                        help="resolution policies (default native,upsample)")
    parser.add_argument("--blocks", type=_ints, metavar="I,I,...",
                        help="flat encoder block indices, negative from the end (default: last block of each stage)")
    parser.add_argument("--no-embedding", action="store_true", help="leave out the encoder output row")
    parser.add_argument("--max-grid", type=int, default=32, metavar="N",
                        help="pool token grids to at most this side (default 32)")
    parser.add_argument("--n-eig", type=int, default=20, metavar="K", help="NCut eigenvectors (default 20)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the cut's sampling (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptsam.data.folder import read_rgb
    from adaptsam.diagnostics.ncut import NcutConfig, run_ncut, save_grid, summary, write_tables
    from adaptsam.errors import IncompatibleError
    from adaptsam.predict import find_images

    if args.backbone is None and args.weights is None:
        raise IncompatibleError("Expected --backbone NAME or --weights FILE (an adapter file names its backbone).")
    config = build_config(NcutConfig, "ncut", resolutions=args.resolutions, policies=args.policies,
                          blocks=args.blocks, embedding=not args.no_embedding, max_grid=args.max_grid,
                          n_eig=args.n_eig, seed=args.seed)
    device = device_from_args(args)  # an unusable device fails before any image is read
    if args.max_images < 1:
        raise ConfigError(f"Expected --max-images to be at least 1, got {args.max_images}.")
    paths, missing = find_images(args.images)
    for _, why in missing:
        print(f"adaptsam ncut: warning: {why}")
    paths = paths[:args.max_images]
    if not paths:
        raise ConfigError(f"ncut: no images found in {' '.join(args.images)}; expected image files, folders or glob "
                          f"patterns.")
    images = [read_rgb(p) for p in paths]
    check_out_dir(args.out, force=True)  # a file or an uncreatable folder fails before the model is built
    if args.checkpoint is None:
        fetch_checkpoints(weights_backbone(args.weights, args.backbone), download=args.download)
    result = run_ncut(images, config, backbone=args.backbone, weights=args.weights, checkpoint=args.checkpoint,
                      progress=not args.quiet, device=device)
    grid = save_grid(result, f"{args.out}/ncut_grid.png")
    csv_path, md_path = write_tables(result, args.out)
    (grid.parent / "summary.json").write_text(json.dumps({"images": [str(p) for p in paths], **summary(result)},
                                                         indent=2) + "\n", encoding="utf-8")
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {grid}, {csv_path}, {md_path} ({len(paths)} images, {len(result.columns)} settings, "
          f"{len(result.blocks)} blocks, {result.seconds:.0f} s)")
    return 0
