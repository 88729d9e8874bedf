"""Markdown tables and PNG figures from every stored benchmark result: ``report(cfg)``.

Results from several machines merge into one report: each record carries its machine facts,
and the latest successful record of each measurement key is the one shown.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from sparsebench.bench.store import read_records
from sparsebench.config import absolute_path
from sparsebench.report_figures import write_figures

log = logging.getLogger(__name__)


def result_files(patterns: list[str]) -> list[Path]:
    """Expand the ``results`` globs; raise FileNotFoundError when nothing matches."""
    files = sorted({Path(match) for pattern in patterns for match in glob.glob(absolute_path(str(pattern)))})
    if not files:
        raise FileNotFoundError(
            f"results={list(patterns)} matches no file; run `python benchmark.py` first, or give "
            "results='[path/to/results.jsonl]'."
        )
    return files


def shown_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one record per key: the latest success, else the latest failure."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        previous = chosen.get(record["key"])
        if previous is None or record["status"] == "ok" or previous["status"] != "ok":
            chosen[record["key"]] = record
    return list(chosen.values())


def results_frame(records: list[dict[str, Any]], dense_max_sparsity: float) -> pd.DataFrame:
    """Flatten records into one row per measurement, labelling each file dense or pruned by its sparsity."""
    rows = []
    for record in records:
        measurement, machine = record["measurement"], record["machine"]
        facts = record.get("model_facts") or {}
        metrics = record.get("metrics") or {}
        settings = record.get("engine_settings") or {}
        accuracy = record.get("accuracy") or {}
        sparsity = facts.get("sparsity/prunable")
        if sparsity is None:
            sparsity = facts.get("sparsity/overall")
        # A prune run names its files dense.onnx and pruned.onnx, and its dense baseline may
        # carry the recipe's initial sparsity. So the name decides there, the sparsity elsewhere.
        variant = measurement["source"].get("label")
        if isinstance(variant, str):
            variant = variant.removesuffix(".int8")  # quantize writes dense.int8.onnx and pruned.int8.onnx
        if variant not in ("dense", "pruned") and sparsity is not None:
            variant = "dense" if sparsity <= dense_max_sparsity else "pruned"
        rows.append({
            "machine": f"{machine.get('cpu_model') or 'unknown CPU'} ({machine['hostname']})",
            "hostname": machine["hostname"],
            "model": measurement["model"],
            "file": measurement["source"].get("sha256") or measurement["source"].get("weights"),
            "engine": measurement["engine"],
            "batch_size": measurement["batch_size"],
            "image_size": measurement.get("image_size"),
            "scenario": measurement["scenario"],
            "threads": measurement["threads"],
            "protocol": protocol(measurement["bench"]),
            "repeats_planned": measurement["bench"]["repeats"],
            "repeat_s": measurement["bench"]["duration_s"],
            "precision": measurement["precision"],
            # Records written before INT8 support have no weights/precision: their files were float.
            "weights": facts.get("weights/precision", "fp32"),
            "effective_precision": settings.get("effective_precision"),
            "val_acc": accuracy.get("val/acc"),
            "status": record["status"],
            "error": record.get("error"),
            "sparsity": sparsity,
            "variant": variant,
            "parameters": facts.get("parameters"),
            "bytes": facts.get("file/bytes"),
            "gzip_bytes": facts.get("file/gzip_bytes"),
            "gzip_ratio": facts.get("file/gzip_ratio"),
            "throughput": metrics.get("throughput/items_per_s"),
            "throughput_std": metrics.get("throughput/items_per_s_std"),
            "latency_p99_ms": metrics.get("latency_ms/p99"),
            "busy": metrics.get("cpu/other_processes_busy"),
        })
    return pd.DataFrame(rows)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Format a GitHub markdown table; numbers are formatted by the caller."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(ok: pd.DataFrame) -> str:
    """Format throughput (items/s, mean ± std over repeats) by machine, model, file and batch, a column per engine."""
    engines = sorted(ok["engine"].unique())
    rows = []
    keys = ["machine", "model", "image_size", "variant", "sparsity", "weights", "file", "batch_size", "scenario", "threads"]
    for key, group in ok.groupby(keys, sort=True, dropna=False):
        machine, model, image_size, variant, sparsity, weights, _, batch_size, scenario, threads = key
        cells = []
        for engine in engines:
            match = group[group["engine"] == engine]
            cells.append("" if match.empty else f"{match['throughput'].iloc[0]:.1f} ± {match['throughput_std'].iloc[0]:.1f}")
        rows.append([machine, model, image_size, variant, f"{100 * sparsity:.1f}", weights, batch_size,
                     f"{scenario}, {threads} thr", *cells])
    headers = ["machine", "model", "input (px)", "variant", "sparsity (%)", "weights", "batch", "scenario",
               *[f"{engine} (items/s)" for engine in engines]]
    return markdown_table(headers, rows)


def speedup_rows(ok: pd.DataFrame) -> pd.DataFrame:
    """Pair every pruned result with the dense result of the same model, engine and settings.

    The model must match in input size and parameter count too, so a pruned 10-class file
    is never compared with a 1000-class export of the same architecture.
    """
    keys = ["machine", "model", "image_size", "parameters", "weights", "engine", "batch_size", "scenario", "threads",
            "precision"]
    dense = ok[ok["variant"] == "dense"].drop_duplicates(keys, keep="last")
    pruned = ok[ok["variant"] == "pruned"]
    pairs = pruned.merge(dense[[*keys, "throughput", "sparsity"]], on=keys, suffixes=("", "_dense"))
    pairs["speedup"] = pairs["throughput"] / pairs["throughput_dense"]
    return pairs


def speedup_table(pairs: pd.DataFrame) -> str:
    """Format dense vs pruned throughput and the speed-up of pruning, per engine."""
    rows = [
        [row.machine, row.model, f"{100 * row.sparsity:.1f}", row.weights, row.engine, row.batch_size,
         f"{row.throughput_dense:.1f}", f"{row.throughput:.1f}", f"{row.speedup:.2f}x"]
        for row in pairs.sort_values(["machine", "model", "sparsity", "weights", "engine", "batch_size"]).itertuples()
    ]
    headers = ["machine", "model", "sparsity (%)", "weights", "engine", "batch", "dense (items/s)", "pruned (items/s)",
               "speed-up"]
    return markdown_table(headers, rows)


def int8_rows(ok: pd.DataFrame) -> pd.DataFrame:
    """Pair every INT8 result with the float result of the same model, variant, engine and settings.

    Quantization keeps every zero and can add a few, where weights below half a quantization
    step round to zero. So among float files of the same variant, the pair is the most sparse
    one that is not sparser than the INT8 file.
    """
    keys = ["machine", "model", "image_size", "variant", "engine", "batch_size", "scenario", "threads", "precision"]
    float_rows = ok[ok["weights"] == "fp32"]
    int8 = ok[ok["weights"] == "int8"].reset_index(drop=True).reset_index(names="int8_row")
    pairs = int8.merge(float_rows[[*keys, "sparsity", "throughput", "val_acc", "effective_precision"]], on=keys,
                       suffixes=("", "_float"))
    pairs = pairs[pairs["sparsity_float"] <= pairs["sparsity"] + 1e-9]
    pairs = pairs.sort_values("sparsity_float").drop_duplicates("int8_row", keep="last")
    pairs["speedup"] = pairs["throughput"] / pairs["throughput_float"]
    return pairs


def int8_table(pairs: pd.DataFrame) -> str:
    """Format float vs INT8 throughput per engine, with the precision each engine ran and both files' top-1."""
    def percent(value: float | None) -> str:
        return "" if value is None or pd.isna(value) else f"{100 * value:.2f}"

    rows = [
        [row.machine, row.model, row.variant, f"{100 * row.sparsity_float:.1f} / {100 * row.sparsity:.1f}", row.engine,
         row.batch_size, f"{row.throughput_float:.1f}", f"{row.throughput:.1f}", f"{row.speedup:.2f}x",
         f"{row.effective_precision_float} / {row.effective_precision}", percent(row.val_acc_float), percent(row.val_acc)]
        for row in pairs.sort_values(["machine", "model", "variant", "sparsity", "engine", "batch_size"]).itertuples()
    ]
    headers = ["machine", "model", "variant", "sparsity float / INT8 (%)", "engine", "batch", "float (items/s)", "INT8 (items/s)",
               "speed-up", "engine ran (float / INT8)", "top-1 float (%)", "top-1 INT8 (%)"]
    return markdown_table(headers, rows)


def compression_table(ok: pd.DataFrame) -> str:
    """Format parameters, sparsity, file size and gzip -9 size of every measured file."""
    # Exports with random weights share a "file" entry, so the input size distinguishes them.
    files = ok.drop_duplicates(["file", "image_size"]).sort_values(["model", "image_size", "sparsity"])
    rows = [
        [row.model, row.image_size, row.variant, row.weights, f"{100 * row.sparsity:.1f}",
         f"{row.parameters / 1e6:.2f}", f"{row.bytes / 2**20:.2f}", f"{row.gzip_bytes / 2**20:.2f}",
         f"{row.gzip_ratio:.2f}"]
        for row in files.itertuples()
    ]
    headers = ["model", "input (px)", "variant", "weights", "sparsity (%)", "parameters (M)", "ONNX (MiB)",
               "gzip -9 (MiB)", "gzip ratio"]
    return markdown_table(headers, rows)


def flagged_table(flagged: pd.DataFrame, header: str, values: list[str]) -> str:
    """Format the measurements in ``flagged``, each with its entry of ``values`` in a last column ``header``."""
    return markdown_table(
        ["machine", "model", "input (px)", "variant", "engine", "batch", header],
        [[row.machine, row.model, row.image_size, row.variant, row.engine, row.batch_size, value]
         for row, value in zip(flagged.itertuples(), values)],
    )


def protocol(bench: dict[str, Any]) -> str:
    """Describe a measurement's timing protocol, e.g. ``bench=default, 5 x 60 s after 10 s warm-up``."""
    return f"bench={bench.get('name')}, {bench['repeats']} x {bench['duration_s']:g} s after {bench['warmup_s']:g} s warm-up"


def machine_table(records: list[dict[str, Any]]) -> str:
    """Format CPU, caches, clock, instruction sets and engine versions of every machine."""
    machines = {record["machine"]["hostname"]: record["machine"] for record in records}
    rows = []
    for hostname, facts in sorted(machines.items()):
        isa = facts.get("isa") or {}
        libraries = facts.get("libraries") or {}
        clock = facts.get("max_clock_mhz")
        rows.append([
            hostname, facts.get("cpu_model"), facts.get("cpu_vendor"),
            f"{facts.get('physical_cores')} / {facts.get('logical_cpus')}",
            ", ".join(f"{level} {size}" for level, size in (facts.get("caches") or {}).items()),
            "unknown" if clock is None else f"{clock:.0f}",
            ", ".join(name for name, present in isa.items() if present) or "none",
            ", ".join(f"{name} {libraries.get(name)}" for name in ("onnxruntime", "openvino", "deepsparse")),
        ])
    headers = ["host", "CPU", "vendor", "cores / threads", "caches", "max clock (MHz)", "ISA", "engines"]
    return markdown_table(headers, rows)


def failure_table(failed: pd.DataFrame) -> str:
    """Format every failed measurement with its phase and the first line of its error."""
    rows = [
        [row.machine, row.model, row.engine, row.batch_size, row.error["phase"],
         f"{row.error['type']}: {row.error['message'].splitlines()[0][:160]}".replace("|", "/")]
        for row in failed.itertuples()
    ]
    return markdown_table(["machine", "model", "engine", "batch", "phase", "error"], rows)


def report(cfg: DictConfig) -> Path:
    """Write ``report.md`` and the figures into the run folder and return the markdown's path."""
    if not 0 <= cfg.dense_max_sparsity < 1:
        raise ValueError(f"dense_max_sparsity={cfg.dense_max_sparsity} must be in [0, 1), e.g. 0.05.")
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = result_files(list(cfg.results))
    records = shown_records(read_records(files))
    if not records:
        raise ValueError(f"results files {[str(f) for f in files]} contain no benchmark record; run benchmark.py first.")
    frame = results_frame(records, cfg.dense_max_sparsity)
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] != "ok"]
    pairs = speedup_rows(ok)
    int8_pairs = int8_rows(ok)

    sections = [
        "# Benchmark report",
        f"{len(ok)} measurement(s) from {ok['hostname'].nunique()} machine(s) in {', '.join(str(f) for f in files)}; "
        f"{len(failed)} failed. Throughput is mean ± std over repeats; a file counts as pruned above "
        f"{100 * cfg.dense_max_sparsity:.0f}% sparsity (measured over the pruned layers when the prune run's "
        "sparsity.json is next to the file, else over all Conv/Gemm/MatMul weights).",
        "## Throughput by model and engine", throughput_table(ok) if len(ok) else "No successful measurement.",
        "## Dense vs pruned: speed-up of pruning per engine",
        speedup_table(pairs) if len(pairs) else "No pruned file has a dense counterpart with the same settings.",
        "## Float vs INT8 per engine",
        "Top-1 is measured through ONNX Runtime on the validation split by the prune or quantize run that wrote "
        "the file; the engine's precision is read back from each engine after compiling (unknown where it cannot be).",
        int8_table(int8_pairs) if len(int8_pairs) else "No INT8 file has a float counterpart with the same settings.",
        "## Compression", compression_table(ok) if len(ok) else "",
        "## Machines", machine_table(records),
    ]
    busy = ok[ok["busy"].fillna(0) > cfg.busy_max_fraction]
    if len(busy):
        sections += [
            "## Measurements taken on a busy machine",
            f"Other processes used more than {100 * cfg.busy_max_fraction:.0f}% of the CPUs during these; rerun them "
            "with force=true on an idle machine.",
            flagged_table(busy, "other processes (% of CPUs)", [f"{100 * value:.0f}" for value in busy["busy"]]),
        ]
    full = cfg.full_protocol
    shortened = ok[(ok["repeats_planned"] < full.repeats) | (ok["repeat_s"] < full.duration_s)]
    if len(shortened):
        sections += [
            "## Measurements shorter than the full protocol",
            f"These had fewer than {full.repeats} repeats or repeats shorter than {full.duration_s:g} s, the "
            "study's protocol, so their figures are less certain. bench=quick is for smoke runs only.",
            flagged_table(shortened, "protocol", list(shortened["protocol"])),
        ]
    if len(failed):
        sections += ["## Failed measurements", failure_table(failed)]

    figures = write_figures(ok, pairs, output_dir / "figures", cfg.batch_size, cfg.scenario)
    sections += ["## Figures", "Float files only; the INT8 files are in the tables above.", *[f"![{path.stem}](figures/{path.name})" for path in figures]]
    path = output_dir / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    log.info("report with %d measurement(s) and %d figure(s): %s", len(ok), len(figures), path)
    return path
