"""A description of the machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def describe(redis_info: dict[str, Any], redis_binary: str) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _os_name(),
        "python": platform.python_version(),
        "redis_server": _server_name(redis_info, redis_binary),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _server_name(info: dict[str, Any], binary: str) -> str:
    if "valkey_version" in info or "valkey" in Path(binary).name:
        return f"Valkey {info.get('valkey_version', info.get('redis_version'))} ({binary})"
    return f"Redis {info.get('redis_version')} ({binary})"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def freeze(python: Path) -> dict[str, str]:
    """``pip freeze`` of a venv as {distribution name (lower case): version}."""
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONSAFEPATH": "1"},
        cwd="/",
    ).stdout
    versions = {}
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            versions[name.strip().lower().replace("_", "-")] = version.strip()
    return versions
