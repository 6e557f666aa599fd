"""Uncertainty for the report: seed confidence intervals, bootstrap over test images, paired differences.

With several seeds a cell's Dice is the mean over seeds ± a 95% t-interval. With one seed the interval is a
percentile bootstrap over the test images' per-image Dice. Two configurations evaluated on the same images
are compared with a paired bootstrap of the per-image differences: if its 95% interval contains 0, the
difference is within noise. With several seeds, :func:`paired_seed_image_difference` resamples seeds and
test images together (a two-level bootstrap), so "n.s." accounts for seed-to-seed spread as well as for
which images happened to be in the test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


def seed_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval of per-seed scores."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    from scipy import stats

    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def bootstrap_interval(per_image: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval of per-image scores."""
    values = np.asarray(per_image, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(values.mean()), float(low), float(high)


def paired_difference(a: dict[str, float], b: dict[str, float], seed: int = 0) -> tuple[float, float, float] | None:
    """Mean and bootstrap interval of a − b over the images both scored; None when they share none."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    return bootstrap_interval([a[k] - b[k] for k in common], seed)


def paired_seed_image_difference(a: Sequence[dict[str, float]], b: Sequence[dict[str, float]],
                                 seed: int = 0) -> tuple[float, float, float] | None:
    """Mean and bootstrap interval of mean(a) − mean(b), where each side is a list of per-seed {image: Dice}
    maps: every resample draws the shared test images with replacement (paired: both sides score the same
    images) and, independently per side, its seeds with replacement. None when the sides share no image."""
    if not a or not b:
        return None
    common = sorted(set.intersection(*(set(m) for m in [*a, *b])))
    if not common:
        return None
    table_a = np.array([[m[k] for k in common] for m in a])  # seeds × images
    table_b = np.array([[m[k] for k in common] for m in b])
    rng = np.random.default_rng(seed)
    images = rng.integers(0, len(common), size=(RESAMPLES, len(common)))
    seeds_a = rng.integers(0, len(a), size=(RESAMPLES, len(a)))
    seeds_b = rng.integers(0, len(b), size=(RESAMPLES, len(b)))
    diffs = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        mean_a = table_a[seeds_a[i]][:, images[i]].mean()
        mean_b = table_b[seeds_b[i]][:, images[i]].mean()
        diffs[i] = mean_a - mean_b
    low, high = np.quantile(diffs, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(table_a.mean() - table_b.mean()), float(low), float(high)


def within_noise(interval: tuple[float, float, float] | None) -> bool:
    return interval is not None and interval[1] <= 0 <= interval[2]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (higher x and higher y are better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y = [], -np.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])
