"""Facts about the machine a measurement ran on, stored with every result.

CPU facts come from /proc/cpuinfo and /sys on Linux. Elsewhere, and wherever a fact is not
exposed (many virtual machines hide the maximum clock), the fact is stored as None and a
warning is logged once, never guessed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform
import socket
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

# /proc/cpuinfo flag names of the instruction sets that decide engine kernels.
ISA_FLAGS = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni",),
    "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_tile", "amx_bf16", "amx_int8"),
}
LIBRARIES = ("onnxruntime", "openvino", "deepsparse", "onnx", "numpy", "torch", "timm", "sparsebench")
CPU_SYSFS = Path("/sys/devices/system/cpu")


def cpuinfo_fields() -> dict[str, str]:
    """Return the first processor's fields from /proc/cpuinfo, or {} where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cache_sizes() -> dict[str, str]:
    """Return cache sizes of cpu0 by level and type, e.g. ``{"L1d": "32K", "L3": "32768K"}``."""
    caches = {}
    for index in sorted((CPU_SYSFS / "cpu0" / "cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[f"L{level}{suffix}"] = size
    return caches


def max_clock_mhz() -> float | None:
    """Return the maximum CPU clock in MHz from cpufreq, or None where it is not exposed."""
    path = CPU_SYSFS / "cpu0" / "cpufreq" / "cpuinfo_max_freq"
    try:
        return int(path.read_text()) / 1000
    except (OSError, ValueError):
        frequency = psutil.cpu_freq()
        return float(frequency.max) if frequency and frequency.max else None


def library_versions() -> dict[str, str | None]:
    """Return the installed version of each library that shapes a result, None if missing."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.lru_cache(maxsize=1)
def machine_facts() -> dict[str, Any]:
    """Collect CPU, cache, instruction-set and library facts once per process."""
    cpuinfo = cpuinfo_fields()
    flags = set(cpuinfo.get("flags", "").split())
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "architecture": platform.machine(),
        "cpu_model": cpuinfo.get("model name") or platform.processor() or None,
        "cpu_vendor": cpuinfo.get("vendor_id"),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": psutil.cpu_count(logical=True),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "caches": cache_sizes(),
        "max_clock_mhz": max_clock_mhz(),
        "current_clock_mhz": float(cpuinfo["cpu MHz"]) if "cpu MHz" in cpuinfo else None,
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "isa": {name: any(flag in flags for flag in names) for name, names in ISA_FLAGS.items()} if flags else None,
        "libraries": library_versions(),
    }
    unknown = [key for key in ("cpu_model", "cpu_vendor", "max_clock_mhz", "isa") if facts[key] is None]
    if not facts["caches"]:
        unknown.append("caches")
    if unknown:
        log.warning("machine facts not exposed on this system, stored as unknown: %s", ", ".join(unknown))
    return facts


def physical_cores() -> int:
    """Return the physical core count this process may use: the default thread count."""
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return max(1, min(cores, usable))
