"""``SyntheticShapes``: textured discs and squares generated in code, the bench's offline default dataset.

Why this design: it must need no files and be fast (~3 ms per 256×256 image on one core), a pretrained SAM with a
box prompt must do reasonably on it (shapes have clear outlines), and adapters must have something to
learn. So the foreground shapes are *striped*, while flat-coloured blobs of the background class
(distractors) are scattered in the scene and may sit inside a shape's box; about half the shapes are
camouflaged (their mean colour is close to the background around them). A box alone is then ambiguous;
the stripe texture is what tells object from clutter.

Every sample is a pure function of ``(seed, split, index)``: a layout (shape kinds, positions, colours,
textures, a noise seed) is drawn first and rendered second, so :meth:`SyntheticShapes.mask_at` can
rasterise the mask without painting the image.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from adaptsam.data.types import BACKGROUND, Sample, SegmentationDataset
from adaptsam.errors import DataError
from adaptsam.train_config import check_int

DEFAULT_SIZES = {"train": 64, "test": 32, "val": 16}
DISC, SQUARE, BLOB = "disc", "square", "blob"
PLAIN_CLASS_COLOURS = {1: (225.0, 60.0, 40.0), 2: (40.0, 90.0, 225.0)}  # discs red, squares blue (clutter=False)
EDGE_SOFTNESS = 1.2  # pixels over which a shape's edge fades into the background (mild blur)


@dataclass(frozen=True)
class Shape:
    """One shape of a layout; ``extent`` is the disc radius, the square's half side or the blob's semi-axes."""

    kind: str
    cx: float
    cy: float
    extent: tuple[float, float]
    angle: float
    colour: tuple[float, float, float]
    stripe_period: float  # pixels; 0 = flat colour
    stripe_angle: float
    stripe_amplitude: float
    label: int


@dataclass(frozen=True)
class Layout:
    """Everything one sample is made of; rendering it involves no further randomness."""

    size: int
    background: np.ndarray  # 3×3×3 uint8 colour grid, upsampled to a smooth gradient
    noise_seed: int
    noise_std: float
    shapes: tuple[Shape, ...]  # painted in order; later shapes occlude earlier ones


class SyntheticShapes(SegmentationDataset):
    """1–max_shapes striped discs/squares on a smooth, noisy background with flat distractor blobs.

    Args:
        split: ``train`` (64 images by default), ``test`` (32) or ``val`` (16); any other name needs ``n``.
        size: image side in pixels (images are square).
        n: number of images (default: by split, see above).
        num_classes: 1 → discs and squares are both class 1 (binary); 2 → disc = 1, square = 2.
        seed: changes every image; ``(seed, split, index)`` fully determines a sample.
        max_shapes: objects per image are drawn from 1..max_shapes. With one box per class, a binary image
            with several objects gets one box around all of them, which box-prompted models handle poorly
            (LiteMedSAM zero-shot at 256, 16 test images: Dice 0.91 with one object, 0.63 with several,
            0.70 overall; 0.82 for the two-class set); ``max_shapes=1`` gives a single-object set.
        clutter: distractor blobs and camouflaged shapes (default). ``False`` gives plain striped shapes on the
            background and, with two classes, red discs and blue squares: an easy set for smoke tests of
            prompt-free methods (telling discs from squares by shape alone from frozen SAM features at R=64
            stayed near 0.2 Dice after 400 decoder steps).
    """

    def __init__(self, split: str = "train", *, size: int = 256, n: int | None = None, num_classes: int = 1,
                 seed: int = 0, max_shapes: int = 3, clutter: bool = True):
        if n is None:
            if split not in DEFAULT_SIZES:
                raise DataError(f"SyntheticShapes has default sizes for splits {', '.join(DEFAULT_SIZES)}; got split "
                                f"{split!r}. Use one of those or pass n=NUMBER_OF_IMAGES.")
            n = DEFAULT_SIZES[split]
        check_int("n", n, 1)
        check_int("size", size, 16)
        check_int("seed", seed, 0)
        check_int("max_shapes", max_shapes, 1)
        if num_classes not in (1, 2):
            raise ValueError(f"Expected num_classes 1 (binary) or 2 (disc, square), got {num_classes!r}.")
        self.split, self.size, self.n, self.num_classes, self.seed = split, size, n, num_classes, seed
        self.max_shapes = max_shapes
        self.clutter = bool(clutter)
        self.name = "synthetic" if num_classes == 1 else "synthetic_2class"
        self.classes = (BACKGROUND, "foreground") if num_classes == 1 else (BACKGROUND, DISC, SQUARE)
        self.ids = [f"{split}_{i:05d}" for i in range(n)]

    def layout(self, index: int) -> Layout:
        i = self._check_index(index)
        rng = np.random.default_rng([self.seed, zlib.crc32(self.split.encode()), i])
        return draw_layout(rng, self.size, self.num_classes, self.max_shapes, self.clutter)

    def __getitem__(self, index: int) -> Sample:
        i = self._check_index(index)
        layout = self.layout(i)
        meta = {"id": self.ids[i], "image_path": None, "mask_path": None, "dataset": self.name, "split": self.split}
        image, mask = render(layout)
        return Sample(image, mask, meta)

    def mask_at(self, index: int) -> np.ndarray:
        return render_mask(self.layout(index))


def synthetic(split: str = "train", *, root: str | os.PathLike | None = None, **options) -> SyntheticShapes:
    """Generated striped discs and squares among flat distractors, binary; needs no files (the offline default)."""
    return SyntheticShapes(split, num_classes=1, **options)  # root is accepted for the common signature; unused


def synthetic_2class(split: str = "train", *, root: str | os.PathLike | None = None,
                     **options) -> SyntheticShapes:
    """Generated striped discs (class 1) and squares (class 2) among flat distractors; needs no files."""
    return SyntheticShapes(split, num_classes=2, **options)  # root is accepted for the common signature; unused


# -- drawing a layout ----------------------------------------------------------------------------------------
def draw_layout(rng: np.random.Generator, size: int, num_classes: int, max_shapes: int = 3,
                clutter: bool = True) -> Layout:
    """Random scene parameters; all randomness of a sample is spent here. Without ``clutter`` the same
    draws are made but distractors are left out and no shape is camouflaged (plain shapes on a background)."""
    background = rng.integers(30, 226, size=(3, 3, 3), dtype=np.uint8)
    shapes: list[Shape] = []
    for _ in range(rng.integers(0, 3)):  # distractors first, so objects occlude them
        a, b = rng.uniform(0.08, 0.16, size=2) * size
        cx, cy = rng.uniform(0.1, 0.9, size=2) * size
        colour = tuple(rng.uniform(20, 235, size=3))
        blob = Shape(BLOB, cx, cy, (a, b), rng.uniform(0, math.pi), colour, 0.0, 0.0, 0.0, 0)
        if clutter:
            shapes.append(blob)
    for _ in range(rng.integers(1, max_shapes + 1)):
        kind = DISC if rng.random() < 0.5 else SQUARE
        side = rng.uniform(0.15, 0.45) * size  # disc diameter or square side
        half = side / 2
        # the centre stays at least a quarter side inside the frame, so most of the shape is visible
        cx, cy = rng.uniform(half / 2, size - half / 2, size=2)
        angle = rng.uniform(0, math.pi / 2) if rng.random() < 0.5 else 0.0
        local = background.reshape(9, 3)[_grid_cell(cx, size) + 3 * _grid_cell(cy, size)].astype(float)
        camouflaged = rng.random() < 0.5  # close to the background colour: texture is the cue
        colour = np.clip(local + rng.uniform(-25, 25, size=3), 0, 255) if camouflaged and clutter else \
            rng.uniform(20, 235, size=3)
        label = 1 if num_classes == 1 or kind == DISC else 2
        if not clutter and num_classes == 2:  # plain set: each class also has its own colour family
            colour = np.array(PLAIN_CLASS_COLOURS[label]) + rng.uniform(-20, 20, size=3)
        shapes.append(Shape(kind, cx, cy, (half, half), angle, tuple(colour),
                            stripe_period=rng.uniform(0.04, 0.09) * size, stripe_angle=rng.uniform(0, math.pi),
                            stripe_amplitude=rng.uniform(30, 60), label=label))
    return Layout(size, background, int(rng.integers(2**31)), float(rng.uniform(3, 10)), tuple(shapes))


def _grid_cell(coordinate: float, size: int) -> int:
    return min(int(coordinate / size * 3), 2)


# -- rendering -------------------------------------------------------------------------------------------------
def render_mask(layout: Layout) -> np.ndarray:
    """int64 mask: a pixel belongs to a shape when its centre is inside it; later shapes win."""
    mask = np.zeros((layout.size, layout.size), dtype=np.int64)
    for shape in layout.shapes:
        window, distance = _signed_distance(shape, layout.size)
        if window is not None:
            mask[window][distance < 0] = shape.label
    return mask


def render(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB image and its int64 mask: smooth background, shapes with soft edges, sensor-like noise."""
    size = layout.size
    gradient = Image.fromarray(layout.background, "RGB").resize((size, size), Image.BILINEAR)
    image = np.array(gradient, dtype=np.float32)
    mask = np.zeros((size, size), dtype=np.int64)
    for shape in layout.shapes:
        window, distance = _signed_distance(shape, size)
        if window is None:
            continue
        mask[window][distance < 0] = shape.label
        alpha = np.clip(np.float32(0.5) - distance * np.float32(1 / EDGE_SOFTNESS), 0.0, 1.0)[..., None]
        fill = np.asarray(shape.colour, dtype=np.float32)
        if shape.stripe_period:
            rows, cols = window
            step = np.float32(2 * math.pi / shape.stripe_period)
            ys = np.arange(rows.start, rows.stop, dtype=np.float32) * (step * np.float32(math.sin(shape.stripe_angle)))
            xs = np.arange(cols.start, cols.stop, dtype=np.float32) * (step * np.float32(math.cos(shape.stripe_angle)))
            stripes = np.sin(ys[:, None] + xs[None, :]) * np.float32(shape.stripe_amplitude)
            fill = fill + stripes[..., None]
        region = image[window]
        region += alpha * (fill - region)
    noise = np.random.default_rng(layout.noise_seed).standard_normal((size, size), dtype=np.float32)
    image += (np.float32(layout.noise_std) * noise)[..., None]
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8), mask


def _signed_distance(shape: Shape, size: int) -> tuple[tuple[slice, slice] | None, np.ndarray]:
    """Distance (pixels, negative inside) from each pixel centre to the shape's outline, on its bounding window.

    Exact for discs and (rotated) squares near their edges, a close approximation for blobs (ellipses);
    only the sign and the first pixel or two outside matter (mask and edge softness).
    """
    reach = math.hypot(*shape.extent) + 2 if shape.kind != DISC else shape.extent[0] + 2
    r0, r1 = max(int(shape.cy - reach), 0), min(int(shape.cy + reach) + 1, size)
    c0, c1 = max(int(shape.cx - reach), 0), min(int(shape.cx + reach) + 1, size)
    if r0 >= r1 or c0 >= c1:
        return None, np.empty((0, 0), np.float32)
    y = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5 - shape.cy)
    x = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5 - shape.cx)
    if shape.kind == DISC:
        distance = np.sqrt(x * x + y * y) - np.float32(shape.extent[0])
    else:
        cos, sin = np.float32(math.cos(shape.angle)), np.float32(math.sin(shape.angle))
        u, v = x * cos + y * sin, y * cos - x * sin
        if shape.kind == SQUARE:
            distance = np.maximum(np.abs(u), np.abs(v)) - np.float32(shape.extent[0])
        else:
            a, b = shape.extent
            distance = (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * np.float32(min(a, b))
    return (slice(r0, r1), slice(c0, c1)), distance
