"""Figures of a sensitivity analysis, drawn from the content of ``sensitivity.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure


def plot_curves(report: dict[str, Any], path: Path) -> None:
    """Draw mean val/acc (%) against sparsity (%) per layer, with a band of one std across seeds."""
    sparsity = 100 * np.asarray(report["sparsities"])
    baseline = 100 * report["baseline/val_acc"]
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    axes = figure.subplots()
    for index, (name, entry) in enumerate(report["layers"].items()):
        color, linestyle = _style(index)
        mean = 100 * np.asarray(entry["val_acc_mean"])
        std = 100 * np.asarray(entry["val_acc_std"])
        axes.plot(sparsity, mean, marker="o", markersize=3, color=color, linestyle=linestyle,
                  label=f"{name} ({entry['numel']:,} weights)")
        axes.fill_between(sparsity, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
    axes.axhline(baseline, color="black", linestyle="--", linewidth=1, label=f"unpruned ({baseline:.2f}%)")
    axes.axhspan(baseline - report["tolerance_points"], baseline, color="grey", alpha=0.15,
                 label=f"tolerance ({report['tolerance_points']:.1f} points)")
    axes.set_xlabel("sparsity of the one masked layer (%)")
    axes.set_ylabel("val/acc (%)")
    axes.set_xlim(0, 100)
    axes.grid(alpha=0.3)
    runs = len(report["runs"])
    axes.set_title(
        f"{report['model']}: one layer masked at a time, {report['method']} masks"
        + (f", mean of {runs} seeds" if report["method"] == "random" else "")
    )
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    figure.savefig(path, dpi=120)


def plot_ranking(report: dict[str, Any], path: Path) -> None:
    """Draw, most sensitive layer on top, each layer's max safe sparsity (%) and its drop at the highest sparsity."""
    names = report["ranking"]
    layers = report["layers"]
    top = 100 * report["sparsities"][-1]
    safe = [100 * layers[name]["max_safe_sparsity"] for name in names]
    drop = [layers[name]["drop_points"][-1] for name in names]
    positions = np.arange(len(names))

    figure = Figure(figsize=(10, 0.45 * len(names) + 1.8), layout="constrained")
    left, right = figure.subplots(1, 2, sharey=True)
    bars = left.barh(positions, safe, color="tab:green")
    left.bar_label(bars, labels=[f"{value:.0f}%" for value in safe], padding=3, fontsize="small")
    left.set_xlim(0, 115)
    left.set_xticks(range(0, 101, 20))
    left.set_xlabel(f"max safe sparsity (%): mean drop <= {report['tolerance_points']:.1f} points")
    left.set_ylabel("layer (weights)")
    left.set_yticks(positions, [f"{name} ({layers[name]['numel']:,})" for name in names])
    left.invert_yaxis()
    bars = right.barh(positions, drop, color="tab:red")
    right.bar_label(bars, labels=[f"{value:.1f}" for value in drop], padding=3, fontsize="small")
    right.margins(x=0.15)
    right.axvline(report["tolerance_points"], color="black", linestyle="--", linewidth=1)
    right.set_xlabel(f"mean val/acc drop at {top:.0f}% sparsity (points)")
    for axes in (left, right):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(f"{report['model']}: layers ranked by sensitivity, most sensitive first")
    figure.savefig(path, dpi=120)


def _style(index: int) -> tuple[Any, str]:
    """Return the color and line style of the index-th line: ten colors, then the next line style."""
    return colormaps["tab10"](index % 10), ("-", "--", ":", "-.")[(index // 10) % 4]
