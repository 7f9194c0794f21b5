"""What this machine has: RAM, CPU and NVIDIA GPUs. Probing never raises.

- RAM: ``psutil`` when it is installed, else ``/proc/meminfo`` (Linux), else ``sysconf``; capped
  by a cgroup v2 memory limit (``/sys/fs/cgroup/memory.max``) when one is set, as in containers,
  where ``/proc/meminfo`` shows the host's memory.
- CPU: logical cores (``os.cpu_count``, or the scheduler affinity when narrower) and the model name
  from ``/proc/cpuinfo`` or ``platform``.
- GPUs: ``nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits``
  with a timeout; absent, failing or slow means "no NVIDIA GPU", with the reason in ``notes``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GPU", "Hardware", "probe", "probe_ram", "probe_gpus", "parse_meminfo", "parse_nvidia_smi", "cpu_model"]

MIB = 1024 * 1024
NVIDIA_SMI_QUERY = [
    "--query-gpu=index,name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
]


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    memory_total: int  # bytes
    memory_free: int  # bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hardware:
    ram_total: int  # bytes
    ram_available: int  # bytes
    cpu_count: int
    cpu_model: str = ""
    gpus: list[GPU] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: where the numbers came from: "probed", or "given" when the user stated them
    ram_source: str = "probed"
    gpu_source: str = "probed"

    @property
    def vram_total(self) -> int:
        return sum(g.memory_total for g in self.gpus)

    @classmethod
    def given(
        cls,
        ram_gb: float,
        vram_gb: float = 0.0,
        gpu_name: str = "",
        cpu_count: int | None = None,
    ) -> Hardware:
        """A machine described by the user (``--ram``/``--vram``) or by a test."""
        gpus = []
        if vram_gb > 0:
            vram = int(vram_gb * 1e9)
            gpus = [GPU(0, gpu_name or f"GPU with {vram_gb:g} GB", vram, vram)]
        ram = int(ram_gb * 1e9)
        return cls(
            ram_total=ram,
            ram_available=ram,
            cpu_count=cpu_count or (os.cpu_count() or 1),
            gpus=gpus,
            ram_source="given",
            gpu_source="given",
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [g.to_dict() for g in self.gpus]
        data["vram_total"] = self.vram_total
        return data


def parse_meminfo(text: str) -> tuple[int, int]:
    """(total, available) in bytes from ``/proc/meminfo`` text; available falls back to free+cache."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        values[key.strip()] = number * 1024 if unit == "kb" else number
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable")
    if available is None:
        available = values.get("MemFree", 0) + values.get("Buffers", 0) + values.get("Cached", 0)
    return total, min(available, total) if total else available


def _cgroup_limit(root: Path = Path("/sys/fs/cgroup")) -> tuple[int | None, int | None]:
    """(limit, current usage) of a cgroup v2 memory limit, or (None, None)."""
    try:
        raw = (root / "memory.max").read_text().strip()
    except OSError:
        return None, None
    if not raw or raw == "max":
        return None, None
    try:
        limit = int(raw)
    except ValueError:
        return None, None
    try:
        current = int((root / "memory.current").read_text().strip())
    except (OSError, ValueError):
        current = None
    return limit, current


def probe_ram(
    meminfo: Path = Path("/proc/meminfo"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> tuple[int, int, list[str]]:
    """(total, available, notes) in bytes."""
    notes: list[str] = []
    total = available = 0
    try:
        import psutil  # optional

        vm = psutil.virtual_memory()
        total, available = int(vm.total), int(vm.available)
    except Exception:  # not installed, or unsupported here
        try:
            total, available = parse_meminfo(meminfo.read_text())
        except OSError:
            try:
                total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
            except (ValueError, OSError, AttributeError):
                notes.append("could not read the amount of RAM")
    limit, current = _cgroup_limit(cgroup_root)
    if limit is not None and (total == 0 or limit < total):
        total = limit
        if current is not None:
            available = min(available or limit, max(limit - current, 0))
        notes.append(f"RAM limited to {limit / 1e9:.1f} GB by the container (cgroup memory.max)")
    return total, available, notes


def parse_nvidia_smi(text: str) -> list[GPU]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free`` CSV (MiB).

    Also accepts the three-column form without ``index``. Lines it cannot read are skipped.
    """
    gpus: list[GPU] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 3:
            cells = [str(len(gpus)), *cells]
        if len(cells) < 4:
            continue
        try:
            index = int(cells[0])
            total = int(float(cells[-2]) * MIB)
        except ValueError:
            continue
        try:
            free = int(float(cells[-1]) * MIB)
        except ValueError:  # "[N/A]" on some boards: assume all of it
            free = total
        name = ",".join(cells[1:-2]).strip()
        gpus.append(GPU(index, name, total, free))
    return gpus


def probe_gpus(nvidia_smi: str | None = None, timeout: float = 5.0) -> tuple[list[GPU], list[str]]:
    """NVIDIA GPUs through ``nvidia-smi``; ([], [reason]) when there is none or it fails."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return [], ["no NVIDIA GPU found (nvidia-smi is not installed)"]
    try:
        result = subprocess.run(
            [exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return [], [f"nvidia-smi did not answer within {timeout:g} s; GPUs ignored"]
    except OSError as exc:
        return [], [f"nvidia-smi could not run ({exc}); GPUs ignored"]
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        return [], [f"nvidia-smi failed: {reason[0] if reason else f'exit {result.returncode}'}"]
    gpus = parse_nvidia_smi(result.stdout)
    return gpus, ([] if gpus else ["nvidia-smi listed no GPU"])


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def probe(nvidia_smi: str | None = None, timeout: float = 5.0) -> Hardware:
    """Probe this machine. Never raises; what could not be read is said in ``notes``."""
    total, available, notes = probe_ram()
    gpus, gpu_notes = probe_gpus(nvidia_smi, timeout)
    return Hardware(
        ram_total=total,
        ram_available=available,
        cpu_count=_cpu_count(),
        cpu_model=cpu_model(),
        gpus=gpus,
        notes=notes + gpu_notes,
    )
