"""The report's PNGs: Dice vs images/s (Pareto front marked), Dice vs trainable parameters, Dice vs R.

One panel per dataset. Colour = adapter, marker = policy; random-init backbones are hollow. matplotlib runs
headless (Agg) and is imported only here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from adaptsam.bench.stats import pareto_front

POLICY_MARKERS = {"native": "o", "upsample": "s"}
OTHER_MARKERS = ("^", "D", "v", "P", "X", "*")


def _setup() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _styles(entries: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    plt = _setup()
    adapters = sorted({e.adapter for e in entries})
    cmap = plt.get_cmap("tab10")
    colours = {a: cmap(i % 10) for i, a in enumerate(adapters)}
    markers = dict(POLICY_MARKERS)
    for i, policy in enumerate(sorted({e.policy for e in entries} - set(markers))):
        markers[policy] = OTHER_MARKERS[i % len(OTHER_MARKERS)]
    return colours, markers


def _panels(entries: list[Any]) -> tuple[Any, Any, list[tuple[str, list[Any]]]]:
    plt = _setup()
    groups: dict[str, list[Any]] = defaultdict(list)
    for entry in entries:
        groups[entry.dataset].append(entry)
    items = sorted(groups.items())
    fig, axes = plt.subplots(1, len(items), figsize=(6.4 * len(items), 4.8), squeeze=False)
    return fig, axes[0], items


def _scatter(ax: Any, entry: Any, x: float, colours: dict[str, Any], markers: dict[str, str]) -> None:
    colour = colours[entry.adapter]
    face = colour if entry.pretrained else "none"
    dice, low, high = entry.dice
    ax.errorbar(x, dice, yerr=[[dice - low], [high - dice]], fmt="none", ecolor=colour, alpha=0.5, capsize=2)
    ax.scatter([x], [dice], marker=markers[entry.policy], s=60, facecolors=face, edgecolors=colour, linewidths=1.5,
               zorder=3)


def _legend(ax: Any, entries: list[Any], colours: dict[str, Any], markers: dict[str, str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=a) for a, c in colours.items()]
    handles += [Line2D([], [], color="grey", marker=m, linestyle="", label=p) for p, m in markers.items()
                if any(e.policy == p for e in entries)]
    if any(not e.pretrained for e in entries):
        handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="",
                              label="† random-init backbone"))
    ax.legend(handles=handles, fontsize=8, loc="best")


def _label(ax: Any, entry: Any, x: float) -> None:
    ax.annotate(f"{entry.backbone} R{entry.resolution}", (x, entry.dice[0]), textcoords="offset points",
                xytext=(4, 4), fontsize=7, alpha=0.8)


def _scatter_figure(entries: list[Any], path: Path, x_of: Any, title: str, xlabel: str, *,
                    pareto: bool = False) -> Path:
    """One panel per dataset: Dice against ``x_of(entry)`` on a log axis, optionally with the Pareto front."""
    plt = _setup()
    colours, markers = _styles(entries)
    fig, axes, groups = _panels(entries)
    for ax, (dataset, group) in zip(axes, groups):
        group = [e for e in group if np.isfinite(x_of(e))]  # e.g. cells not timed yet: no speed to draw
        points = [(x_of(e), e.dice[0]) for e in group]
        for entry, (x, _) in zip(group, points):
            _scatter(ax, entry, x, colours, markers)
            _label(ax, entry, x)
        if pareto:
            front = pareto_front(points)
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, alpha=0.6)
        ax.set_xscale("log")
        ax.set(title=f"{dataset}: {title}", xlabel=xlabel, ylabel="mean Dice at R")
        ax.grid(alpha=0.3)
        _legend(ax, group, colours, markers)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig: Any, path: Path) -> None:
    """Atomic: a reader (or a second ``report``) never sees half a PNG."""
    import os

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def dice_vs_speed(entries: list[Any], path: Path) -> Path:
    return _scatter_figure(entries, path, lambda e: e.metric("images_per_s"),
                           "accuracy vs speed (dashed: Pareto front)", "images / s (log)", pareto=True)


def dice_vs_params(entries: list[Any], path: Path) -> Path:
    # zero-shot trains nothing: drawn at 1 on the log axis
    return _scatter_figure(entries, path, lambda e: max(e.metric("trainable_params"), 1.0),
                           "accuracy vs trainable parameters", "trainable parameters (log; 0 at 1)")


def dice_vs_resolution(entries: list[Any], path: Path) -> Path:
    plt = _setup()
    colours, markers = _styles(entries)
    fig, axes, groups = _panels(entries)
    for ax, (dataset, group) in zip(axes, groups):
        lines: dict[tuple, list[Any]] = defaultdict(list)
        for entry in group:
            lines[(entry.backbone, entry.adapter, entry.policy, entry.pretrained)].append(entry)
        for (backbone, adapter, policy, pretrained), line in sorted(lines.items()):
            line.sort(key=lambda e: e.resolution)
            style = "-" if policy == "native" else "--"
            ax.plot([e.resolution for e in line], [e.dice[0] for e in line], style, color=colours[adapter],
                    marker=markers[policy], markerfacecolor=colours[adapter] if pretrained else "none",
                    label=f"{backbone}{'' if pretrained else '†'} {adapter} {policy}")
        ax.set_xscale("log", base=2)
        resolutions = sorted({e.resolution for e in group})
        ax.set_xticks(resolutions, [str(r) for r in resolutions])
        ax.set(title=f"{dataset}: accuracy vs resolution", xlabel="R (pixels)", ylabel="mean Dice at R")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def write_plots(entries: list[Any], out: Path) -> list[Path]:
    if not entries:
        return []
    return [dice_vs_speed(entries, out / "dice_vs_speed.png"), dice_vs_params(entries, out / "dice_vs_params.png"),
            dice_vs_resolution(entries, out / "dice_vs_resolution.png")]
