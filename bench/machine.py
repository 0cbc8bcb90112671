"""Describe the machine a benchmark ran on: CPU, memory, OS, Python, libraries, disk.

Linux-first (reads /proc and /sys); every field degrades to "unknown" elsewhere.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("msgspec", "blake3", "orjson")
UNKNOWN = "unknown"


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cpu() -> dict[str, object]:
    model = UNKNOWN
    cores: set[tuple[str, str]] = set()
    physical, core = "", ""
    flags: list[str] = []
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model == UNKNOWN:
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
        elif key == "flags" and not flags:
            flags = value.split()
    if model == UNKNOWN:
        model = platform.processor() or UNKNOWN
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    mhz = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cores": usable,
        "max_mhz": int(mhz) // 1000 if mhz and mhz.isdigit() else None,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
    }


def _memory_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _os() -> dict[str, object]:
    pretty = UNKNOWN
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.partition("=")[2].strip('"')
    return {"system": platform.system(), "distribution": pretty, "kernel": platform.release(), "platform": platform.platform()}


def _python() -> dict[str, object]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
        "executable": sys.executable,
    }


def _packages() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _mount_of(path: Path) -> dict[str, str] | None:
    """The /proc/self/mountinfo entry whose mount point is the longest prefix of `path`."""
    best: dict[str, str] | None = None
    target = str(path.resolve())
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= len(best["mount_point"])):
            best = {
                "mount_point": mount_point,
                "dev": fields[2],
                "fs_type": tail[0],
                "source": tail[1],
                "options": fields[5] + (" (superblock " + tail[2] + ")" if len(tail) > 2 else ""),
            }
    return best


def _block_device(dev: str) -> dict[str, object]:
    base = Path("/sys/dev/block") / dev
    if not base.exists():
        return {}
    real = base.resolve()
    queue = base / "queue"
    if not queue.exists() and (real.parent / "queue").exists():  # a partition: the disk holds the queue
        queue = real.parent / "queue"
    size = _read(base / "size")
    model = _read(base / "device" / "model") or _read(real.parent / "device" / "model")
    virtio = "virtio" in str(real)
    return {
        "name": real.name,
        "model": model or ("virtio block device" if virtio else None),
        "size_bytes": int(size) * 512 if size and size.isdigit() else None,
        "rotational": _read(queue / "rotational"),
        "scheduler": _read(queue / "scheduler"),
        "cache_type": _read(base / "cache_type") or _read(queue / "write_cache"),
    }


def _filesystem(path: Path) -> dict[str, object]:
    info: dict[str, object] = {"path": str(path.resolve())}
    mount = _mount_of(path)
    if mount is not None:
        info.update(mount)
        info["device"] = _block_device(mount["dev"])
    try:
        st = os.statvfs(path)
        info["total_bytes"] = st.f_frsize * st.f_blocks
        info["free_bytes"] = st.f_frsize * st.f_bavail
    except OSError:
        pass
    return info


def describe(out_dir: Path) -> dict[str, object]:
    """Everything above as one JSON-ready dict; `out_dir` is where the benchmark writes."""
    return {
        "cpu": _cpu(),
        "memory_bytes": _memory_bytes(),
        "os": _os(),
        "python": _python(),
        "packages": _packages(),
        "filesystem": _filesystem(out_dir),
    }


def summary_lines(machine: dict[str, object]) -> list[str]:
    """The description as short human-readable lines."""
    cpu = _as_dict(machine["cpu"])
    osinfo = _as_dict(machine["os"])
    py = _as_dict(machine["python"])
    fs = _as_dict(machine["filesystem"])
    dev = _as_dict(fs.get("device", {}))
    mem = machine.get("memory_bytes")
    packages = _as_dict(machine["packages"])
    simd = "+".join(name for name in ("avx2", "avx512f") if cpu.get(name)) or "no avx2"
    lines = [
        f"CPU      {cpu['model']} ({cpu['arch']}), {cpu['logical_cores']} logical / "
        f"{cpu['physical_cores'] or '?'} physical cores, {cpu['usable_cores']} usable, {simd}",
        f"Memory   {_gib(mem)}",
        f"OS       {osinfo['distribution']}, kernel {osinfo['kernel']}",
        f"Python   {py['implementation']} {py['version']} ({py['compiler']})",
        "Packages " + ", ".join(f"{name} {version}" for name, version in packages.items()),
        f"Output   {fs.get('path')} on {fs.get('fs_type', '?')} ({fs.get('source', '?')}, mounted at {fs.get('mount_point', '?')}, "
        f"{fs.get('options', '?')}), {_gib(fs.get('free_bytes'))} free of {_gib(fs.get('total_bytes'))}",
    ]
    if dev:
        lines.append(
            f"Disk     {dev.get('name')}: {dev.get('model') or '?'}, {_gib(dev.get('size_bytes'))}, "
            f"rotational={dev.get('rotational')}, cache={dev.get('cache_type')}, scheduler={dev.get('scheduler')}"
        )
    return lines


def _as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _gib(value: object) -> str:
    return f"{value / (1 << 30):.1f} GiB" if isinstance(value, int) else "?"
