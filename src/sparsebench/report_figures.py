"""PNG figures of benchmark results: throughput per CPU, across CPUs, and against sparsity.

Every figure shows one batch size and scenario, given by the report config, and states both
in its title. Throughput axes are logarithmic because the study networks differ by more
than an order of magnitude.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

log = logging.getLogger(__name__)

ENGINE_COLORS = {"ort": "#4c72b0", "openvino": "#dd8452", "deepsparse": "#55a868"}
DPI = 120


def log_throughput_axis(ax: plt.Axes) -> None:
    """Put the y axis on a log scale labelled with plain numbers instead of powers of ten.

    Minor ticks are labelled where the axis spans less than a decade, else only at 2 and 5
    times a power of ten, so that labels stay apart.
    """

    def minor_label(value: float, _: int) -> str:
        low, high = ax.get_ylim()
        leading_digit = round(value / 10 ** np.floor(np.log10(value)))
        return f"{value:g}" if high / low < 10 or leading_digit in (2, 5) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor_label))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def color(engine: str) -> str:
    return ENGINE_COLORS.get(engine, "#8172b2")


def most_sparse_pruned(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep dense rows and, per machine, model and engine, only the most sparse pruned file."""
    dense = frame[frame["variant"] == "dense"]
    pruned = frame[frame["variant"] == "pruned"].sort_values("sparsity")
    pruned = pruned.drop_duplicates(["machine", "model", "engine"], keep="last")
    return pd.concat([dense.drop_duplicates(["machine", "model", "engine"], keep="last"), pruned])


def bar_chart(frame: pd.DataFrame, machine: str, title_suffix: str, path: Path) -> Path:
    """Draw grouped bars for one CPU: models on the x axis, a dense and a pruned bar per engine."""
    models = sorted(frame["model"].unique())
    engines = sorted(frame["engine"].unique())
    slots = [(engine, variant) for engine in engines for variant in ("dense", "pruned")]
    width = 0.8 / len(slots)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(models) + 2), 4.5))
    for index, (engine, variant) in enumerate(slots):
        rows = frame[(frame["engine"] == engine) & (frame["variant"] == variant)].set_index("model")
        present = [model for model in models if model in rows.index]
        if not present:
            continue
        x = np.array([models.index(model) for model in present]) - 0.4 + (index + 0.5) * width
        ax.bar(
            x, rows.loc[present, "throughput"], width, yerr=rows.loc[present, "throughput_std"], capsize=2,
            color=color(engine), alpha=0.45 if variant == "dense" else 1.0, hatch="//" if variant == "dense" else None,
            edgecolor="black", linewidth=0.5, label=f"{engine} {variant}",
        )
    ax.set_xticks(range(len(models)), models, rotation=20 if len(models) > 4 else 0)
    log_throughput_axis(ax)
    ax.set_ylabel("throughput (images/s, log scale)")
    ax.set_title(f"{machine}\n{title_suffix}", fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(engines), loc="upper center", bbox_to_anchor=(0.5, -0.15 if len(models) > 4 else -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def overview_chart(frame: pd.DataFrame, title_suffix: str, path: Path) -> Path:
    """Draw one panel per model: throughput across CPUs, a line per engine, solid pruned and dashed dense."""
    models = sorted(frame["model"].unique())
    machines = sorted(frame["machine"].unique())
    columns = min(3, len(models))
    rows_count = int(np.ceil(len(models) / columns))
    fig, axes = plt.subplots(rows_count, columns, figsize=(4.2 * columns, 3.4 * rows_count), squeeze=False)
    for ax, model in zip(axes.flat, models):
        for (engine, variant), rows in frame[frame["model"] == model].groupby(["engine", "variant"]):
            rows = rows.set_index("machine").reindex(machines)
            dense = variant == "dense"
            ax.plot(range(len(machines)), rows["throughput"], marker="o", color=color(engine),
                    markerfacecolor="white" if dense else color(engine), markersize=8 if dense else 6,
                    linestyle="--" if dense else "-", label=f"{engine} {variant}")
        ax.set_title(model, fontsize=10)
        ax.set_xticks(range(len(machines)), [m.split(" (")[0] for m in machines], rotation=15, fontsize=8)
        ax.set_xlim(-0.5, len(machines) - 0.5)
        log_throughput_axis(ax)
        ax.set_ylabel("throughput (images/s)")
        ax.grid(which="both", alpha=0.3)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.suptitle(f"Throughput across CPUs, {title_suffix}", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def sparsity_chart(frame: pd.DataFrame, machine: str, title_suffix: str, path: Path) -> Path:
    """Draw one panel per engine: throughput against measured sparsity, a line per model."""
    engines = sorted(frame["engine"].unique())
    fig, axes = plt.subplots(1, len(engines), figsize=(4.2 * len(engines), 3.8), squeeze=False, sharey=True)
    for ax, engine in zip(axes.flat, engines):
        for model, rows in frame[frame["engine"] == engine].groupby("model"):
            rows = rows.sort_values("sparsity")
            ax.errorbar(100 * rows["sparsity"], rows["throughput"], yerr=rows["throughput_std"], marker="o",
                        capsize=2, label=model)
        ax.set_title(engine, fontsize=10, color=color(engine))
        ax.set_xlabel("sparsity (%)")
        ax.set_xlim(-5, 105)
        log_throughput_axis(ax)
        ax.grid(which="both", alpha=0.3)
    axes.flat[0].set_ylabel("throughput (images/s)")
    axes.flat[-1].legend(fontsize=8)
    fig.suptitle(f"Throughput vs sparsity on {machine}, {title_suffix}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_figures(ok: pd.DataFrame, pairs: pd.DataFrame, folder: Path, batch_size: int, scenario: str) -> list[Path]:
    """Write every figure for ``batch_size`` and ``scenario`` into ``folder``; return their paths."""
    # The figures compare dense and pruned float files; INT8 files are compared in the report's tables.
    shown = ok[(ok["batch_size"] == batch_size) & (ok["scenario"] == scenario) & ok["variant"].notna()
               & (ok["weights"] == "fp32")]
    if shown.empty:
        log.warning("no successful result at batch_size=%d, scenario=%s, so no figure is drawn; set batch_size= "
                    "and scenario= to values that were measured", batch_size, scenario)
        return []
    # One architecture may be measured at several input sizes, which are different workloads.
    shown = shown.assign(model=shown["model"] + " @ " + shown["image_size"].astype(str) + " px")
    folder.mkdir(parents=True, exist_ok=True)
    title_suffix = f"batch size {batch_size}, {scenario}"
    paths = []
    bars = most_sparse_pruned(shown)
    for machine, rows in bars.groupby("machine"):
        paths.append(bar_chart(rows, machine, f"{title_suffix}; dense hatched, most sparse pruned file solid",
                               folder / f"throughput_{slug(machine)}.png"))
    paths.append(overview_chart(bars, title_suffix, folder / "overview_across_cpus.png"))
    for machine, rows in shown.groupby("machine"):
        paths.append(sparsity_chart(rows, machine, title_suffix, folder / f"throughput_vs_sparsity_{slug(machine)}.png"))
    return paths
