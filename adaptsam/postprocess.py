"""Post-processing of predicted masks: pure functions on numpy/torch, each optional, one config.

The model predicts logits at the low resolution R; what a user wants is a clean mask at the size of the
image they gave. The order matters and is fixed by :func:`postprocess_masks`:

1. :func:`upsample_logits` crops the padding of the R×R input and resizes the **logits** bilinearly to the
   original size; thresholding comes after, because upsampling a binary mask turns every R-pixel step into
   a staircase of original pixels, while interpolated logits place the boundary between R-pixels.
2. :func:`remove_small_components`, :func:`fill_small_holes`, :func:`keep_largest_component` clean each
   mask (areas are in pixels of the mask they are applied to, i.e. original pixels in ``adaptsam predict``).
3. :func:`mask_nms` drops masks that repeat a higher-scored one (IoU above a threshold), as prompts that
   hit the same object (two boxes on one polyp) otherwise give near-identical masks.

Multi-class (class-prompt) logits become one label map with :func:`class_labels` (argmax over classes,
background where the best class probability is below a threshold), cleaned per class by
:func:`clean_label_map`. scipy is imported inside the functions that need it (it costs ~0.5 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

CONNECTIVITIES = (1, 2)


@dataclass(frozen=True)
class PostprocessConfig:
    """What to do to each predicted mask; the defaults change nothing but the threshold.

    Args:
        threshold: logit above which a pixel is foreground (0 = probability 0.5, SAM's convention).
        min_component_area: remove connected components smaller than this many pixels (0 = keep all).
        max_hole_area: fill holes (background regions enclosed by the mask) smaller than this (0 = none).
        keep_largest: keep only the largest connected component of each mask.
        nms_iou: drop a mask whose IoU with a higher-scored kept mask exceeds this (None = keep all).
        connectivity: 1 = 4-connected pixels form a component, 2 = 8-connected.
        class_threshold: class-prompt label maps: background where the best class probability is below
            this (None = the adapter's own threshold).
    """

    threshold: float = 0.0
    min_component_area: int = 0
    max_hole_area: int = 0
    keep_largest: bool = False
    nms_iou: float | None = None
    connectivity: int = 1
    class_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_component_area", "max_hole_area"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Expected {name} to be an integer >= 0 (pixels), got {value!r}.")
        if self.nms_iou is not None and not 0 < self.nms_iou <= 1:
            raise ValueError(f"Expected nms_iou in (0, 1] or None, got {self.nms_iou!r}.")
        if self.connectivity not in CONNECTIVITIES:
            raise ValueError(f"Expected connectivity 1 (4-connected) or 2 (8-connected), got {self.connectivity!r}.")
        if self.class_threshold is not None and not 0 < self.class_threshold < 1:
            raise ValueError(f"Expected class_threshold in (0, 1) or None, got {self.class_threshold!r}.")

    @property
    def cleans(self) -> bool:
        """Whether any per-mask cleanup step is on."""
        return bool(self.min_component_area or self.max_hole_area or self.keep_largest)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# -- from low-resolution logits to the original size ---------------------------------------------------
def upsample_logits(logits: torch.Tensor, valid_hw: tuple[int, int], size_hw: tuple[int, int]) -> torch.Tensor:
    """Crop logits (…×R×R) to the unpadded content ``valid_hw`` (top-left) and resize them bilinearly to
    ``size_hw`` (the original image's height and width). Works on any leading dimensions."""
    h, w = valid_hw
    if logits.dim() < 2 or h > logits.shape[-2] or w > logits.shape[-1] or min(h, w) < 1:
        raise ValueError(f"Expected logits …×H×W holding a valid region of {valid_hw}, got {tuple(logits.shape)}.")
    cropped = logits[..., :h, :w]
    if tuple(size_hw) == (h, w):
        return cropped
    lead = cropped.shape[:-2]
    flat = cropped.reshape(-1, 1, h, w).float()
    resized = F.interpolate(flat, size=tuple(size_hw), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, *size_hw)


def class_labels(logits: torch.Tensor, class_ids: Sequence[int], threshold: float, background: int) -> torch.Tensor:
    """C×H×W (or B×C×H×W) logits, one channel per class → H×W labels: the most probable class, or
    ``background`` where its probability is below ``threshold`` (sigmoid per class, as SAM's masks)."""
    if logits.shape[-3] != len(class_ids):
        raise ValueError(f"Expected {len(class_ids)} class channels (classes {list(class_ids)}), got logits of "
                         f"shape {tuple(logits.shape)}.")
    best, winner = logits.sigmoid().max(dim=-3)
    labels = torch.as_tensor(list(class_ids), dtype=torch.int64, device=logits.device)[winner]
    return torch.where(best >= threshold, labels, torch.full_like(labels, background))


# -- one mask -------------------------------------------------------------------------------------------
def _structure(connectivity: int) -> np.ndarray:
    from scipy.ndimage import generate_binary_structure

    return generate_binary_structure(2, connectivity)


def _label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Component labels and the area of each label (index 0 = not in the mask)."""
    from scipy.ndimage import label

    labels, count = label(mask, structure=_structure(connectivity))
    return labels, np.bincount(labels.ravel(), minlength=count + 1)


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"Expected an H×W mask, got shape {mask.shape}.")
    return mask.astype(bool, copy=False)


def remove_small_components(mask: np.ndarray, min_area: int, connectivity: int = 1) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_area`` pixels."""
    mask = _check_mask(mask)
    if min_area <= 0 or not mask.any():
        return mask.copy()
    labels, areas = _label(mask, connectivity)
    keep = areas >= min_area
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, max_area: int, connectivity: int = 1) -> np.ndarray:
    """``mask`` with its holes of fewer than ``max_area`` pixels filled. A hole is a connected region
    outside the mask that does not touch the image border (a region touching it is not enclosed)."""
    mask = _check_mask(mask)
    if max_area <= 0 or mask.all() or not mask.any():
        return mask.copy()
    labels, areas = _label(~mask, connectivity)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = areas < max_area
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def keep_largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Only the largest connected component of ``mask`` (the first one on ties); empty stays empty."""
    mask = _check_mask(mask)
    if not mask.any():
        return mask.copy()
    labels, areas = _label(mask, connectivity)
    areas[0] = 0
    return labels == int(np.argmax(areas))


def clean_mask(mask: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """Apply the configured cleanup steps to one binary mask: small components, small holes, largest."""
    mask = _check_mask(mask)
    if config.min_component_area:
        mask = remove_small_components(mask, config.min_component_area, config.connectivity)
    if config.max_hole_area:
        mask = fill_small_holes(mask, config.max_hole_area, config.connectivity)
    if config.keep_largest:
        mask = keep_largest_component(mask, config.connectivity)
    return mask


# -- several masks ---------------------------------------------------------------------------------------
def mask_iou(masks: np.ndarray) -> np.ndarray:
    """M×M IoU between the binary masks of an M×H×W stack (0 where both are empty)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"Expected an M×H×W stack of masks, got shape {masks.shape}.")
    flat = torch.from_numpy(masks.reshape(masks.shape[0], -1)).float()
    intersection = flat @ flat.T
    area = flat.sum(dim=1)
    union = area[:, None] + area[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.zeros_like(union)).numpy()


def mask_nms(masks: np.ndarray, scores: Sequence[float], iou_threshold: float) -> np.ndarray:
    """Indices of the masks kept by greedy non-maximum suppression, in their original order.

    Masks are visited from the highest score down; one is dropped when its IoU with an already kept mask
    exceeds ``iou_threshold``. Equal scores keep the earlier mask (a stable sort).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(masks),):
        raise ValueError(f"Expected one score per mask ({len(masks)}), got {scores.shape}.")
    iou = mask_iou(masks)
    kept: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        if all(iou[index, other] <= iou_threshold for other in kept):
            kept.append(int(index))
    return np.array(sorted(kept), dtype=np.int64)


def postprocess_masks(masks: np.ndarray, scores: Sequence[float],
                      config: PostprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Clean each of an M×H×W stack of binary masks, then suppress duplicates.

    Returns the cleaned stack (all M masks, so indices still match the prompts) and a boolean vector
    saying which ones NMS kept. NMS runs on the cleaned masks: that is what the user gets.
    """
    masks = np.asarray(masks, dtype=bool)
    if config.cleans:
        masks = np.stack([clean_mask(m, config) for m in masks]) if len(masks) else masks
    kept = np.ones(len(masks), dtype=bool)
    if config.nms_iou is not None and len(masks) > 1:
        kept[:] = False
        kept[mask_nms(masks, scores, config.nms_iou)] = True
    return masks, kept


def clean_label_map(labels: np.ndarray, config: PostprocessConfig, background: int) -> np.ndarray:
    """Apply the cleanup steps to each class of an H×W label map.

    Removed pixels become ``background``; a filled hole only takes background pixels (a region of another
    class enclosed by this one is a real region, not a hole).
    """
    labels = np.asarray(labels)
    if not config.cleans:
        return labels.copy()
    out = labels.copy()
    for cls in np.unique(labels):
        if cls == background:
            continue
        region = labels == cls
        cleaned = clean_mask(region, config)
        out[region & ~cleaned] = background
        out[cleaned & ~region & (labels == background)] = cls
    return out
