"""Prediction on images of any size with an adapted (or zero-shot) model; what ``adaptsam predict`` runs.

A model adapted at resolution R sees what the bench showed it: each image is degraded to longest side R
and padded to R×R (:func:`adaptsam.data.degrade`), prompts given in original pixels are mapped into that
R×R frame with the same per-axis scale, and the logits come back by cropping the padding and resizing the
*logits* bilinearly to the original size before thresholding (:mod:`adaptsam.postprocess`). Images are
encoded in batches; each image is then decoded with its own prompts (any number per image).

Prompts file (JSON; keys are image file names, or the paths as given on the command line)::

    {"img1.jpg": {"boxes": [[x0, y0, x1, y1], ...], "points": [[x, y, 1], ...]}}

Coordinates are pixel indices of the original image (x = column, y = row; a box holds its extreme pixels).
Each box is one object (one mask). ``points`` are ``[x, y, label]`` with label 1 = foreground, 0 =
background; a flat list is one object's points (alone, or refining the single box), a list of lists gives
one point set per object (with boxes: one per box). Prompt-free adapters (class prompts, PerSAM, prototypes)
need no file.

Failures are per image: an unreadable image or a missing prompt entry is recorded with a message naming
the file, and the other images are still processed (:class:`PredictRun` lists what failed).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptsam.data.degrade import Degraded, degrade
from adaptsam.data.prompts import map_boxes, map_points
from adaptsam.errors import AdaptsamError, DataError, IncompatibleError
from adaptsam.model import Prompts, SamModel
from adaptsam.overlay import save_prediction
from adaptsam.postprocess import PostprocessConfig, clean_label_map, postprocess_masks, upsample_logits

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_IMAGE_ERRORS = (AdaptsamError, OSError, ValueError)  # per-image problems; anything else is a bug and propagates


@dataclass(frozen=True)
class PredictConfig:
    """How ``Predictor`` runs: images encoded per batch, post-processing, overlay look."""

    batch_size: int = 4
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    overlay_alpha: float = 0.45
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1, got {self.batch_size!r}.")
        if not 0 <= self.overlay_alpha <= 1:
            raise ValueError(f"Expected overlay_alpha in [0, 1], got {self.overlay_alpha!r}.")


# -- the model ------------------------------------------------------------------------------------------
def load_model(weights: str | os.PathLike[str] | None = None, *, backbone: str | None = None,
               policy: str | None = None, resolution: int | None = None,
               checkpoint: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> SamModel:
    """An adapter file's model (backbone, policy, R and weights from its metadata), or with no file the
    zero-shot ``backbone`` under ``policy`` (default native) at ``resolution``, in eval mode.

    ``backbone``/``policy``/``resolution`` given together with ``weights`` must agree with the file: an
    adapter made for another backbone is refused here, naming the file and both backbones.
    """
    import adaptsam
    from adaptsam.api import DEFAULT_POLICY

    if weights is None:
        if backbone is None:
            raise IncompatibleError("Expected an adapter file (WEIGHTS) or --backbone NAME for the zero-shot model; "
                                    "got neither.")
        model = adaptsam.create_model(backbone, checkpoint=checkpoint, policy=policy or DEFAULT_POLICY,
                                      resolution=resolution)
    else:
        from adaptsam.adapters.io import read_metadata

        meta = read_metadata(weights)
        made = {"backbone": meta["backbone"], "policy": json.loads(meta["policy"])["name"],
                "resolution": int(meta["resolution"])}
        for key, asked in (("backbone", backbone), ("policy", policy), ("resolution", resolution)):
            if asked is not None and asked != made[key]:
                raise IncompatibleError(f"{weights} was made for {key} {made[key]!r}, but {asked!r} was asked for. "
                                        f"Drop --{key} (the adapter file names its own) or use an adapter file "
                                        f"trained for {asked!r}.")
        model = adaptsam.load_adapter(weights, checkpoint=checkpoint)
    from adaptsam.devices import resolve_device

    return model.to(resolve_device(device)).eval()  # "auto", "cuda:1", ...: checked, a ConfigError if unusable


# -- prompts ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImagePrompts:
    """K objects' prompts in original-image pixels: boxes K×4 (xyxy) and/or points K×N×3 (x, y, label);
    label -1 pads point sets of unequal length (SAM's "not a point")."""

    boxes: np.ndarray | None = None
    points: np.ndarray | None = None

    @property
    def objects(self) -> int:
        return len(self.boxes) if self.boxes is not None else len(self.points) if self.points is not None else 0

    @classmethod
    def parse(cls, entry: Any, where: str) -> ImagePrompts:
        """Validate one prompts-file entry; errors name ``where`` (file and key) and the expected form."""
        if not isinstance(entry, Mapping) or not set(entry) <= {"boxes", "points"} or not entry:
            raise DataError(f"{where}: expected an object with 'boxes' and/or 'points', got {entry!r}.")
        boxes = points = None
        if entry.get("boxes") is not None:
            try:
                boxes = np.asarray(entry["boxes"], dtype=np.float64)
            except (TypeError, ValueError):  # text or ragged lists: the message below says what is expected
                boxes = np.zeros((0, 0))
            if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes) or not np.isfinite(boxes).all() \
                    or (boxes[:, 2:] < boxes[:, :2]).any():
                raise DataError(f"{where}: expected boxes [[x0, y0, x1, y1], ...] with x0 <= x1 and y0 <= y1, "
                                f"got {entry['boxes']!r}.")
        if entry.get("points") is not None:
            points = _parse_points(entry["points"], where)  # a flat list is one set: it refines a single box
            if boxes is not None and len(points) != len(boxes):
                raise DataError(f"{where}: {len(boxes)} boxes need {len(boxes)} point sets (a list of lists of "
                                f"[x, y, label]), got {len(points)}.")
        return cls(boxes, points)

    def check_inside(self, height: int, width: int, image: str) -> None:
        """Refuse a box wholly outside the H×W image (clamping it would predict a corner); partly outside is
        fine (the box is clipped by the model's prompt mapping)."""
        if self.boxes is None:
            return
        for k, (x0, y0, x1, y1) in enumerate(self.boxes.tolist()):
            if x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
                raise DataError(f"Box #{k} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] for image {image} lies wholly outside "
                                f"the image ({width}×{height}, W×H; pixel x in 0..{width - 1}, y in 0..{height - 1}). "
                                f"Fix its coordinates (original-image pixels) in the prompts file.")

    def to_resolution(self, scale_xy: tuple[float, float], valid_hw: tuple[int, int],
                      device: torch.device | str = "cpu") -> Prompts:
        """Map into the degraded image, clipped to its content: boxes to the pixels they cover, points to
        the same pixel centre (``adaptsam.data.prompts``, the one mapping every policy uses too)."""
        high = np.array([valid_hw[1] - 1, valid_hw[0] - 1], dtype=np.float64)
        sx, sy = scale_xy
        boxes = coords = labels = None
        if self.boxes is not None:
            corners = np.clip(map_boxes(self.boxes, sx, sy).reshape(-1, 2, 2), 0, high).reshape(-1, 4)
            boxes = torch.as_tensor(corners, dtype=torch.float32, device=device)[None]
        if self.points is not None:
            xy = np.clip(map_points(self.points[..., :2], sx, sy), 0, high)
            coords = torch.as_tensor(xy, dtype=torch.float32, device=device)[None]
            labels = torch.as_tensor(self.points[..., 2], dtype=torch.float32, device=device)[None]
        return Prompts(boxes, coords, labels)


def _parse_points(raw: Any, where: str) -> np.ndarray:
    try:
        groups = [raw] if not isinstance(raw[0][0], (list, tuple)) else list(raw)
        sets = [np.asarray(g, dtype=np.float64).reshape(-1, 3) for g in groups]
    except (TypeError, ValueError, IndexError):
        sets = []
    if not sets or any(not len(s) or not np.isin(s[:, 2], (0, 1)).all() or not np.isfinite(s).all()
                       for s in sets):
        raise DataError(f"{where}: expected points [[x, y, label], ...] (label 1 = foreground, 0 = background) or "
                        f"a list of such lists, one per object; got {raw!r}.")
    n = max(len(s) for s in sets)
    padded = np.zeros((len(sets), n, 3))
    padded[..., 2] = -1
    for i, s in enumerate(sets):
        padded[i, :len(s)] = s
    return padded


def load_prompts(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A prompts file as a dict; entries are validated when an image asks for them."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"Cannot read prompts file {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(table, dict):
        raise DataError(f"Prompts file {path}: expected an object keyed by image file name, e.g. "
                        f'{{"img1.jpg": {{"boxes": [[10, 20, 200, 180]]}}}}; got a {type(table).__name__}.')
    return table


def prompts_for(table: Mapping[str, Any], image: str | os.PathLike[str], source: str) -> ImagePrompts:
    """The entry of ``image`` (by path as given, file name, or stem); a clear error when there is none."""
    image = str(image)
    for key in (image, Path(image).name, Path(image).stem):
        if key in table:
            return ImagePrompts.parse(table[key], f"{source}[{key!r}]")
    raise DataError(f"No prompts for image {image} in {source}: expected a key {Path(image).name!r}. Add an entry "
                    f'such as {{"{Path(image).name}": {{"boxes": [[x0, y0, x1, y1]]}}}}, or leave the image out.')


# -- inference --------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """Masks at the original size. ``masks`` M×H×W bool (one per prompt, or per class), ``scores`` the
    predicted IoU, ``kept`` what NMS kept, ``classes`` the class per mask (None for prompted masks) and,
    for class prompts, ``labels`` H×W class indices with ``background`` where no class won."""

    masks: np.ndarray
    scores: np.ndarray
    kept: np.ndarray
    classes: list[int | None]
    labels: np.ndarray | None = None
    background: int = 0


class Predictor:
    """Runs ``model`` on images of any size (uint8 H×W×3) with prompts in their own pixels."""

    def __init__(self, model: SamModel, config: PredictConfig | None = None):
        self.model = model.eval()
        self.config = config or PredictConfig()

    def prepare(self, image: np.ndarray) -> Degraded:
        """The image as the model saw its training data: longest side R, padded to R×R."""
        return degrade(image, np.zeros(image.shape[:2], dtype=np.uint8), self.model.resolution)

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray], prompts: Sequence[ImagePrompts | None]) -> list[Prediction]:
        """One batch: images encoded together, each decoded with its prompts (ignored without user prompts)."""
        if self.model.uses_prompts and any(p is None or not p.objects for p in prompts):
            raise IncompatibleError("This model needs prompts (boxes or points) for every image; got an image "
                                    "without any. Only prompt-free adapters (class prompts, PerSAM, prototypes) "
                                    "segment without them.")
        small = [self.prepare(image) for image in images]
        batch = torch.from_numpy(np.stack([d.image for d in small])).permute(0, 3, 1, 2)
        valid_hw = torch.tensor([d.valid_hw for d in small], dtype=torch.int64)
        embeddings = self.model.encode(batch.to(self.model.device).float().div_(255), valid_hw)
        if not self.model.uses_prompts:
            out = self.model.head(self.model, embeddings)
            return [self._classes(out.logits[i], out.iou[i], d, image.shape[:2])
                    for i, (d, image) in enumerate(zip(small, images))]
        results = []
        for i, (d, image, p) in enumerate(zip(small, images, prompts)):
            h, w = image.shape[:2]
            mapped = p.to_resolution((d.valid_hw[1] / w, d.valid_hw[0] / h), d.valid_hw, self.model.device)
            out = self.model.decode(embeddings[i:i + 1], mapped, valid_hw=valid_hw[i:i + 1])
            logits = upsample_logits(out.logits[0], d.valid_hw, (h, w)).cpu()
            masks = (logits > self.config.postprocess.threshold).numpy()
            scores = out.iou[0].float().cpu().numpy()
            masks, kept = postprocess_masks(masks, scores, self.config.postprocess)
            results.append(Prediction(masks, scores, kept, [None] * len(masks)))
        return results

    def _classes(self, logits: torch.Tensor, iou: torch.Tensor, d: Degraded, size: tuple[int, int]) -> Prediction:
        head = self.model.head
        ids = [int(c) for c in head.class_ids.tolist()]
        labels = head.labels(upsample_logits(logits, d.valid_hw, size), self.config.postprocess.class_threshold)
        labels = clean_label_map(labels.cpu().numpy(), self.config.postprocess, head.background_label)
        masks = np.stack([labels == c for c in ids])
        return Prediction(masks, iou.float().cpu().numpy(), np.ones(len(ids), bool), list(ids), labels,
                          head.background_label)


# -- a whole run -------------------------------------------------------------------------------------------
def find_images(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files from files, folders (their images, sorted) and glob patterns; plus what matched nothing."""
    found: dict[Path, None] = {}
    missing: list[tuple[str, str]] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            why = f"folder {item} holds no images (expected {', '.join(IMAGE_SUFFIXES)})"
        elif path.is_file():
            files, why = [path], ""
        elif glob.has_magic(item):
            files = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            why = f"pattern {item!r} matches no file"
        else:
            files, why = [], f"{item}: no such file or folder"
        if not files:
            missing.append((item, why))
        found.update(dict.fromkeys(files))
    return list(found), missing


@dataclass
class PredictRun:
    """What a run did: images predicted, ``failures`` as (input, message), and the summary file."""

    processed: int
    failures: list[tuple[str, str]]
    summary_path: Path


def predict_paths(predictor: Predictor, inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                  prompts_file: str | os.PathLike[str] | None = None,
                  model_info: Mapping[str, Any] | None = None) -> PredictRun:
    """Predict every image in ``inputs``, writing ``masks/``, ``overlays/`` and ``summary.json`` to ``out_dir``."""
    from tqdm.auto import tqdm

    from adaptsam.data.folder import read_rgb

    if predictor.model.uses_prompts and prompts_file is None:
        raise IncompatibleError("This model is promptable: pass a prompts file (--prompts FILE) with boxes or points "
                                "for each image. Only prompt-free adapters (class prompts, PerSAM, prototypes) "
                                "segment without them.")
    if not predictor.model.uses_prompts and prompts_file is not None:
        raise IncompatibleError(f"This model's adapter is prompt-free (it has a prompt-free head) and ignores "
                                f"prompts; drop the prompts file {prompts_file}.")
    table = load_prompts(prompts_file) if prompts_file is not None else None
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)
    paths, failures = find_images(inputs)
    results: list[dict[str, Any]] = []
    names: set[str] = set()
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not predictor.config.progress)
    for start in range(0, len(paths), predictor.config.batch_size):
        ready = []
        for path in paths[start:start + predictor.config.batch_size]:
            try:
                prompts = prompts_for(table, path, str(prompts_file)) if table is not None else None
                image = read_rgb(path)
                if prompts is not None:
                    prompts.check_inside(image.shape[0], image.shape[1], str(path))
                ready.append((path, image, prompts))
            except _IMAGE_ERRORS as exc:
                failures.append((str(path), str(exc)))
        done = []
        try:
            done = list(zip(ready, predictor.predict([r[1] for r in ready], [r[2] for r in ready]))) if ready else []
        except _IMAGE_ERRORS:  # find the culprit: one image at a time
            for item in ready:
                try:
                    done.append((item, predictor.predict([item[1]], [item[2]])[0]))
                except _IMAGE_ERRORS as exc:
                    failures.append((str(item[0]), f"{item[0]}: {exc}"))
        for (path, image, prompts), prediction in done:
            name = _unique(path.stem, names)
            try:
                entry = save_prediction(out, name, image, prediction, prompts, predictor.config.overlay_alpha)
            except OSError as exc:
                failures.append((str(path), f"Cannot write the outputs of {path}: {exc}"))
                continue
            results.append({"image": str(path), "name": name, **entry})
        bar.update(len(paths[start:start + predictor.config.batch_size]))
    bar.close()
    summary = {"model": dict(model_info or {}), "postprocess": predictor.config.postprocess.to_dict(),
               "images": results, "failed": [{"input": i, "error": e} for i, e in failures]}
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return PredictRun(len(results), failures, summary_path)


def _unique(stem: str, taken: set[str]) -> str:
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def describe_model(model: SamModel, weights: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What the summary records about the model that made the predictions."""
    adapter = getattr(model, "adapter", None)
    return {"backbone": model.info.name, "policy": model.policy.to_dict() if model.policy else None,
            "resolution": model.resolution, "adapter": adapter.name if adapter is not None else None,
            "weights": None if weights is None else str(weights), "prompt_free": not model.uses_prompts}
