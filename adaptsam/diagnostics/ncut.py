"""Normalized-cut views of encoder features across resolutions: where does low resolution break them?

For one backbone (optionally with adapter weights) the same few images are encoded at several settings,
the *columns*: each resolution R under each policy (``native`` feeds R×R, ``upsample`` resizes to the
design size first; at the design size both are the same and the duplicate is skipped). Forward hooks on
chosen encoder blocks (found by structure with ``model.prompt_stages()``) and on the encoder output collect
token features. Per block, the tokens of *all* columns and images are embedded by one normalized cut
(ncut-pytorch's Nyström NCut), so a colour means the same thing in every panel: a region that keeps its
colour at R=64 is represented as at R=256; one that changes colour is where low resolution broke it.

Numbers next to the pictures: per block and column, linear CKA (:mod:`adaptsam.diagnostics.cka`) of that
column's features with the reference column's (native at the largest R), after resizing both token grids
to the smaller one.

Settings, and why:

* images are centre-cropped to a square before degrading, so every token holds image content (no padding
  tokens to dominate the cut) and token grids at different R cover the same field of view;
* token grids are average-pooled to at most ``max_grid``² per image before the cut: it bounds the cost
  (TinyViT's first stage has 128×128 tokens at 256) without changing what a panel shows;
* NCut with ``n_eig`` eigenvectors and RBF affinity (sigma = median pairwise distance, the library's
  default rule), cut exactly on up to ``fit_tokens`` (4096) tokens and propagated to the rest; every random choice is
  seeded, so runs repeat (see :func:`joint_ncut`: the library's own sampling is not seedable);
* colours: the eigenvectors without the first (degree-like) one, rows scaled to unit length, first three
  principal components, each scaled between its 1st and 99th percentile over all tokens of the block, so
  colours compare across the panels of one row.

Only ``ncut_pytorch.Ncut`` is imported (its ``predictor`` modules download models from a hub).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from adaptsam.diagnostics.cka import grid_cka, resize_grid
from adaptsam.errors import IncompatibleError
from adaptsam.model import SamModel

EMBEDDING = "embedding"
FIT_TOKENS = 4096  # tokens cut exactly: ~3× faster than the 8192 ncut-pytorch cuts without sampling
EXACT_LIMIT = 8192
SIGMA_SAMPLE = 1000


@dataclass(frozen=True)
class Column:
    """One setting the images are encoded at."""

    policy: str
    resolution: int

    @property
    def label(self) -> str:
        return f"{self.policy} R={self.resolution}"


@dataclass(frozen=True)
class NcutConfig:
    """What :func:`run_ncut` computes.

    Args:
        resolutions: input resolutions R (each a multiple of the backbone's patch stride for ``native``).
        policies: resolution policies per R; a policy at the design size equal to ``native`` is skipped.
        blocks: flat indices into the encoder's blocks (as listed by ``model.prompt_stages()``; negative
            counts from the end); ``None`` picks the last block of each stage (a single-stage ViT: the
            blocks at 1/4, 1/2, 3/4 and the end).
        embedding: also show the encoder's output (the image embedding the decoder sees).
        max_grid: token grids are average-pooled to at most this side per image before the cut.
        n_eig: eigenvectors of the normalized cut.
        fit_tokens: tokens per block the cut is solved on exactly (a seeded subset when there are more);
            the others get the eigenvectors of their nearest fitted tokens.
        seed: seed of the cut's random sampling.
        batch_size: images encoded together.
    """

    resolutions: tuple[int, ...] = (64, 128, 256)
    policies: tuple[str, ...] = ("native", "upsample")
    blocks: tuple[int, ...] | None = None
    embedding: bool = True
    max_grid: int = 32
    n_eig: int = 20
    fit_tokens: int = FIT_TOKENS
    seed: int = 0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not self.resolutions or any(not isinstance(r, int) or r < 1 for r in self.resolutions):
            raise ValueError(f"Expected positive integer resolutions, got {self.resolutions!r}.")
        if not self.policies:
            raise ValueError("Expected at least one policy, e.g. ('native',).")
        if self.max_grid < 2 or self.n_eig < 3 or not self.n_eig < self.fit_tokens <= EXACT_LIMIT:
            raise ValueError(f"Expected max_grid >= 2, n_eig >= 3 and n_eig < fit_tokens <= {EXACT_LIMIT} (above it "
                             f"ncut-pytorch samples unseedably), got {self.max_grid}, {self.n_eig} and "
                             f"{self.fit_tokens}.")

    def columns(self, design_size: int) -> list[Column]:
        columns = []
        for policy in self.policies:
            for r in sorted(set(self.resolutions)):
                if policy != "native" and r == design_size and "native" in self.policies:
                    continue  # the same encoder input as native at the design size
                columns.append(Column(policy, r))
        return columns


@dataclass
class NcutResult:
    """Per block (rows) and column: token colours B×h×w×3 and CKA with the reference column."""

    columns: list[Column]
    blocks: list[str]
    grids: dict[str, dict[str, int]]
    colours: dict[str, dict[str, torch.Tensor]]
    cka: dict[str, dict[str, float]]
    reference: Column
    inputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0


# -- models and features ---------------------------------------------------------------------------------
def build_model(backbone: str | None, column: Column, weights: str | os.PathLike[str] | None = None,
                checkpoint: str | os.PathLike[str] | None = None, device: Any = None) -> SamModel:
    """The backbone (+ adapter weights) prepared for one column.

    An adapter file normally loads only at its own policy and R; here it is loaded on purpose at other
    settings (its tensors don't depend on R), after the same backbone/weights/adapter checks.
    """
    import adaptsam

    if weights is None:
        if backbone is None:
            raise IncompatibleError("Expected --backbone NAME or --weights FILE; got neither.")
        return adaptsam.create_model(backbone, checkpoint=checkpoint, policy=column.policy,
                                     resolution=column.resolution, device=device).eval()
    from safetensors.torch import load_file

    from adaptsam.adapters.io import check_model_matches, read_metadata

    meta = read_metadata(weights)
    if backbone is not None and backbone != meta["backbone"]:
        raise IncompatibleError(f"{weights} was made for backbone {meta['backbone']!r}, but --backbone is "
                                f"{backbone!r}; drop --backbone or pass weights made for {backbone!r}.")
    policy_cfg = json.loads(meta["policy"])
    policy_cfg = {k: v for k, v in policy_cfg.items() if k != "name"} if policy_cfg["name"] == column.policy else {}
    model = adaptsam.create_model(meta["backbone"], checkpoint=checkpoint, policy=column.policy,
                                  policy_cfg=policy_cfg, resolution=column.resolution,
                                  pretrained=json.loads(meta["backbone_pretrained"]), adapter=meta["adapter"],
                                  adapter_cfg=json.loads(meta["adapter_config"]),
                                  seed=int(meta.get("backbone_init_seed", "0")), device=device)
    here = {**meta, "policy": json.dumps(model.policy.to_dict(), sort_keys=True), "resolution": str(column.resolution)}
    check_model_matches(model, here, Path(weights), strict_backbone=True)
    model.adapter.load_trainable(model, load_file(str(weights), device=str(model.device)), source=str(weights))
    return model.eval()


def select_blocks(model: SamModel, indices: Sequence[int] | None) -> list[tuple[str, torch.nn.Module]]:
    """(label, block) for the chosen flat block indices; labels say stage and block (1-based)."""
    flat = [(f"stage{s + 1}.block{b + 1}", block) for s, stage in enumerate(model.prompt_stages())
            for b, block in enumerate(stage.blocks)]
    if indices is None:
        stages = model.prompt_stages()
        if len(stages) > 1:
            ends = np.cumsum([len(s.blocks) for s in stages]) - 1
            indices = [int(e) for e in ends]
        else:
            n = len(flat)
            indices = sorted({max(0, n * q // 4 - 1) for q in (1, 2, 3, 4)})
    chosen = []
    for i in indices:
        if not -len(flat) <= i < len(flat):
            raise IncompatibleError(f"Block index {i} is out of range: {model.info.name} has {len(flat)} encoder "
                                    f"blocks (0..{len(flat) - 1}).")
        chosen.append(flat[i])
    return chosen


def _tokens(output: torch.Tensor, max_grid: int) -> torch.Tensor:
    """A block's output (B×L×C, B×H×W×C, or the encoder's B×C×H×W) → pooled B×h×w×C on the CPU."""
    if output.dim() == 3:
        side = int(round(output.shape[1] ** 0.5))
        output = output.reshape(output.shape[0], side, side, output.shape[2])
    return resize_grid(output.detach().float(), min(max_grid, output.shape[1])).cpu()


@torch.inference_mode()
def extract_features(model: SamModel, images: torch.Tensor, blocks: Sequence[tuple[str, torch.nn.Module]],
                     config: NcutConfig) -> dict[str, torch.Tensor]:
    """Token features B×h×w×C of each chosen block (and the embedding) for float B×3×R×R images in [0, 1]."""
    store: dict[str, list[torch.Tensor]] = {}
    handles = [block.register_forward_hook(
        lambda _m, _a, out, label=label: store.setdefault(label, []).append(_tokens(out, config.max_grid)))
        for label, block in blocks]
    try:
        for start in range(0, len(images), config.batch_size):
            embedding = model.encode(images[start:start + config.batch_size])
            if config.embedding:
                store.setdefault(EMBEDDING, []).append(_tokens(embedding.permute(0, 2, 3, 1), config.max_grid))
    finally:
        for handle in handles:
            handle.remove()
    return {label: torch.cat(parts) for label, parts in store.items()}


def square_inputs(images: Sequence[np.ndarray], resolution: int) -> np.ndarray:
    """Centre-crop each uint8 H×W×3 image to a square and degrade it to R×R (no padding): N×R×R×3."""
    from adaptsam.data.degrade import degrade

    out = []
    for image in images:
        h, w = image.shape[:2]
        side = min(h, w)
        crop = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        out.append(degrade(np.ascontiguousarray(crop), np.zeros((side, side), np.uint8), resolution).image)
    return np.stack(out)


# -- the cut and its colours --------------------------------------------------------------------------------
def joint_ncut(features: Sequence[torch.Tensor], n_eig: int, seed: int,
               max_fit: int = FIT_TOKENS) -> list[torch.Tensor]:
    """One normalized cut over the tokens of every tensor (each …×C); eigenvectors split back per tensor.

    Deterministic for a given ``seed``: ncut-pytorch's own subsampling (farthest-point sampling through
    ``fpsample``, for its Nyström step and its sigma search) starts from an unseeded random point, so the
    library is only given what it cuts exactly: at most ``max_fit`` tokens (a seeded random subset, when
    there are more) and a fixed RBF sigma (the median pairwise distance of a seeded sample, the library's
    own default rule). The other tokens get the eigenvectors of their nearest fitted tokens, weighted by
    the same RBF affinity (the Nyström-style propagation the library does).
    """
    try:
        from ncut_pytorch import Ncut
    except ImportError as exc:
        raise IncompatibleError(f"NCut diagnostics need the 'ncut' extra ({exc.name} is missing): "
                                f"pip install 'adaptsam[ncut]' (ncut-pytorch).") from exc
    flat = [f.reshape(-1, f.shape[-1]).float() for f in features]
    tokens = torch.cat(flat)
    generator = torch.Generator().manual_seed(seed)
    fit = torch.randperm(len(tokens), generator=generator)[:max_fit].sort().values if len(tokens) > max_fit \
        else torch.arange(len(tokens))
    sample = tokens[torch.randperm(len(tokens), generator=generator)[:SIGMA_SAMPLE]]
    distances = torch.pdist(sample)
    sigma = float(distances.median()) if distances.numel() and distances.median() > 0 else 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the eigen-solver is randomised (svd_lowrank)
        # repulsion is off (no repulsion_weight); its sigma is given only to skip a search for an unused value
        cut = Ncut(n_eig=min(n_eig, len(fit) - 1), sigma=sigma, repulsion_sigma=sigma, device="cpu")
        fitted = cut.fit_transform(tokens[fit])
    eigvecs = fitted if len(fit) == len(tokens) else _propagate(tokens, tokens[fit], fitted, sigma)
    return list(torch.split(eigvecs, [len(f) for f in flat]))


def _propagate(tokens: torch.Tensor, fitted_tokens: torch.Tensor, fitted: torch.Tensor, sigma: float,
               neighbours: int = 16, chunk: int = 4096) -> torch.Tensor:
    """Each token's eigenvectors: the RBF-weighted mean over its nearest fitted tokens."""
    out = torch.empty(len(tokens), fitted.shape[1], dtype=fitted.dtype)
    for start in range(0, len(tokens), chunk):
        d2 = torch.cdist(tokens[start:start + chunk], fitted_tokens).pow_(2)
        nearest, index = d2.topk(min(neighbours, len(fitted_tokens)), dim=1, largest=False)
        weights = torch.exp(-(nearest - nearest[:, :1]) / (2 * sigma * sigma))  # shifted: no underflow to 0/0
        out[start:start + chunk] = (weights[..., None] * fitted[index]).sum(1) / weights.sum(1, keepdim=True)
    return out


def eigvec_colours(eigvecs: torch.Tensor, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    """N×k eigenvectors → N×3 RGB in [0, 1].

    The first eigenvector is dropped (it follows each token's degree, not which segment it is in), rows are
    scaled to unit length (as in spectral clustering, so colour follows the direction of a token's cluster
    rather than its magnitude), then the first three principal components are scaled per channel between
    the ``low`` and ``high`` quantiles. On LiteMedSAM's middle stage, plain PCA of the eigenvectors painted
    every token the same hue; this keeps the segments apart. Signs are fixed (largest loading positive).
    """
    kept = eigvecs[:, 1:] if eigvecs.shape[1] > 3 else eigvecs
    unit = F.normalize(kept.double(), dim=1)
    centred = unit - unit.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    v = v[:3].T
    v = v * torch.sign(v[v.abs().argmax(dim=0), torch.arange(v.shape[1])])
    rgb = centred @ v
    rgb = F.pad(rgb, (0, 3 - rgb.shape[1]))  # fewer than 3 components: the missing channels stay 0
    lo, hi = torch.quantile(rgb, low, dim=0), torch.quantile(rgb, high, dim=0)
    return ((rgb - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1).float()


def run_ncut(images: Sequence[np.ndarray], config: NcutConfig, *, backbone: str | None = None,
             weights: str | os.PathLike[str] | None = None, checkpoint: str | os.PathLike[str] | None = None,
             progress: bool = True, device: Any = None) -> NcutResult:
    """Encode ``images`` (uint8 H×W×3) at every column, cut each block's tokens jointly, score CKA.

    ``device`` is where the encoder runs (``auto``, ``cpu``, ``cuda[:N]``; default the CPU); the pooled tokens,
    the cut and CKA are on the CPU either way."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    first = build_model(backbone, Column(config.policies[0], max(config.resolutions)), weights, checkpoint, device)
    columns = config.columns(first.design_size)
    natives = [c for c in columns if c.policy == "native"] or columns
    reference = max(natives, key=lambda c: c.resolution)
    features: dict[str, dict[str, torch.Tensor]] = {}
    inputs: dict[str, list[np.ndarray]] = {}
    labels: list[str] = []
    for column in tqdm(columns, desc="encode", unit="setting", disable=not progress):
        model = first if column == Column(config.policies[0], max(config.resolutions)) else \
            build_model(backbone, column, weights, checkpoint, device)
        blocks = select_blocks(model, config.blocks)
        labels = [label for label, _ in blocks] + ([EMBEDDING] if config.embedding else [])
        pixels = square_inputs(images, column.resolution)
        inputs[column.label] = list(pixels)
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).to(model.device)
        for label, tokens in extract_features(model, batch, blocks, config).items():
            features.setdefault(label, {})[column.label] = tokens
    colours: dict[str, dict[str, torch.Tensor]] = {}
    cka: dict[str, dict[str, float]] = {}
    for label in tqdm(labels, desc="ncut", unit="block", disable=not progress):
        per_column = [features[label][c.label] for c in columns]
        eig = joint_ncut(per_column, config.n_eig, config.seed, config.fit_tokens)
        rgb = eigvec_colours(torch.cat(eig))
        parts = torch.split(rgb, [len(e) for e in eig])
        colours[label] = {c.label: part.reshape(*f.shape[:3], 3) for c, part, f in zip(columns, parts, per_column)}
        ref = features[label][reference.label]
        cka[label] = {c.label: grid_cka(features[label][c.label], ref) for c in columns}
    grids = {label: {c.label: int(features[label][c.label].shape[1]) for c in columns} for label in labels}
    return NcutResult(columns, labels, grids, colours, cka, reference, inputs, time.perf_counter() - started)


# -- outputs -------------------------------------------------------------------------------------------------
def save_grid(result: NcutResult, path: str | os.PathLike[str], panel_inches: float = 0.9) -> Path:
    """PNG grid: a row of the inputs, then one row per block; a group of columns per setting, one panel per
    image; each panel titled with its token grid and, per group, the CKA with the reference."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_images = len(next(iter(result.inputs.values())))
    rows = 1 + len(result.blocks)
    ratios = []
    for i in range(len(result.columns)):
        ratios += ([0.25] if i else []) + [1.0] * n_images
    fig, axes = plt.subplots(rows, len(ratios), figsize=(panel_inches * sum(ratios) + 1.2, panel_inches * rows + 0.9),
                             gridspec_kw={"width_ratios": ratios, "wspace": 0.05, "hspace": 0.3}, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for g, column in enumerate(result.columns):
        for i in range(n_images):
            x = g * (n_images + 1) + i
            axes[0, x].imshow(result.inputs[column.label][i], interpolation="nearest")
            if i == 0:
                axes[0, x].set_title(f"{column.label}", loc="left", fontsize=8, fontweight="bold")
            for r, label in enumerate(result.blocks, start=1):
                axes[r, x].imshow(result.colours[label][column.label][i].numpy(), interpolation="nearest")
                if i == 0:
                    grid = result.grids[label][column.label]
                    axes[r, x].set_title(f"{grid}² tok, CKA {result.cka[label][column.label]:.2f}", loc="left",
                                         fontsize=6)
    for r, label in enumerate(["input"] + result.blocks):
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=7)
    fig.suptitle(f"Joint NCut of encoder tokens (CKA vs {result.reference.label})", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_tables(result: NcutResult, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``cka.csv`` (one row per block × setting) and ``cka.md`` (blocks × settings)."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "cka.csv", out / "cka.md"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["block", "policy", "resolution", "token_grid", "cka_vs_reference", "reference"])
        for label in result.blocks:
            for c in result.columns:
                writer.writerow([label, c.policy, c.resolution, result.grids[label][c.label],
                                 f"{result.cka[label][c.label]:.4f}", result.reference.label])
    header = "| block | " + " | ".join(c.label for c in result.columns) + " |"
    lines = [f"Linear CKA of each setting's tokens with {result.reference.label} (1 = same representation).", "",
             header, "|" + "---|" * (len(result.columns) + 1)]
    for label in result.blocks:
        lines.append(f"| {label} | " + " | ".join(f"{result.cka[label][c.label]:.3f}" for c in result.columns) + " |")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def summary(result: NcutResult) -> dict[str, Any]:
    """JSON-ready numbers: settings, reference, CKA and token grids per block."""
    return {"columns": [c.label for c in result.columns], "reference": result.reference.label,
            "cka": result.cka, "token_grids": result.grids, "seconds": round(result.seconds, 2)}
