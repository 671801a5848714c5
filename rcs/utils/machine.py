"""What a run or a benchmark ran on, for the record: one description for every results file."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model and count, torch threads, platform, Python and torch versions, the GPU when
    there is one, and the load average (these machines are shared: it says how noisy a
    timing was)."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if hasattr(os, "getloadavg"):
        info["load"] = [round(x, 2) for x in os.getloadavg()]
    return info


def describe(info: dict[str, Any]) -> str:
    """``info`` (from :func:`machine`) as one line for a results header."""
    parts = [info["platform"], info["cpu"] or "?", f"{info['cpu_count']} CPUs",
             f"torch {info['torch']}", f"{info['torch_threads']} threads"]
    if info.get("gpu"):
        parts.append(info["gpu"])
    if info.get("load"):
        parts.append("load " + " ".join(f"{x:.2f}" for x in info["load"]))
    return ", ".join(parts)
