"""Hardware probing: RAM, CPU, NVIDIA GPUs; never a crash."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from imgscribe import hardware
from imgscribe.hardware import GPU, Hardware, parse_meminfo, parse_nvidia_smi, probe, probe_gpus, probe_ram

MEMINFO = """MemTotal:       16303428 kB
MemFree:         1024000 kB
MemAvailable:    8151714 kB
Buffers:          100000 kB
Cached:          3000000 kB
"""


def test_parse_meminfo():
    total, available = parse_meminfo(MEMINFO)
    assert total == 16303428 * 1024
    assert available == 8151714 * 1024


def test_parse_meminfo_without_memavailable():
    text = "\n".join(line for line in MEMINFO.splitlines() if not line.startswith("MemAvailable"))
    total, available = parse_meminfo(text)
    assert available == (1024000 + 100000 + 3000000) * 1024
    assert parse_meminfo("garbage\n\nMemTotal: x kB") == (0, 0)


def test_parse_nvidia_smi():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA GeForce RTX 4090, 24564, [N/A]\n\nnot a gpu line\n"
    gpus = parse_nvidia_smi(text)
    assert gpus == [
        GPU(0, "NVIDIA H100 80GB HBM3", 81559 * 1024 * 1024, 80000 * 1024 * 1024),
        GPU(1, "NVIDIA GeForce RTX 4090", 24564 * 1024 * 1024, 24564 * 1024 * 1024),
    ]
    # the three-column form of the brief's query (name, total, free) also works
    assert parse_nvidia_smi("Tesla T4, 15360, 15000") == [GPU(0, "Tesla T4", 15360 * 2**20, 15000 * 2**20)]


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "nvidia-smi"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_probe_gpus_with_a_fake_nvidia_smi(tmp_path):
    exe = _script(tmp_path, "import sys; assert '--format=csv,noheader,nounits' in sys.argv; print('0, NVIDIA A10G, 23028, 22000')")
    gpus, notes = probe_gpus(exe)
    assert notes == [] and gpus[0].name == "NVIDIA A10G" and gpus[0].memory_total == 23028 * 2**20


def test_probe_gpus_absent_failing_or_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    assert probe_gpus() == ([], ["no NVIDIA GPU found (nvidia-smi is not installed)"])
    failing = _script(tmp_path, "import sys; print('NVIDIA-SMI has failed because it could not communicate with the driver', file=sys.stderr); sys.exit(9)")
    gpus, notes = probe_gpus(failing)
    assert gpus == [] and "could not communicate" in notes[0]
    (tmp_path / "slow").mkdir()
    slow = _script(tmp_path / "slow", "import time; time.sleep(30)")
    gpus, notes = probe_gpus(slow, timeout=0.5)
    assert gpus == [] and "did not answer" in notes[0]
    gpus, notes = probe_gpus(str(tmp_path / "missing-binary"))
    assert gpus == [] and "could not run" in notes[0]


def test_probe_ram_reads_meminfo_and_cgroup_limit(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # as when psutil is not installed
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    total, available, notes = probe_ram(meminfo, cgroup)
    assert (total, available, notes) == (16303428 * 1024, 8151714 * 1024, [])
    (cgroup / "memory.max").write_text("4000000000\n")
    (cgroup / "memory.current").write_text("1000000000\n")
    total, available, notes = probe_ram(meminfo, cgroup)
    assert total == 4_000_000_000 and available == 3_000_000_000
    assert "cgroup" in notes[0]
    (cgroup / "memory.max").write_text("max\n")
    assert probe_ram(meminfo, cgroup)[0] == 16303428 * 1024


def test_probe_never_raises(monkeypatch):
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    hw = probe()
    assert isinstance(hw, Hardware)
    assert hw.cpu_count >= 1 and hw.gpus == []
    if os.path.exists("/proc/meminfo"):
        assert hw.ram_total > 0 and 0 < hw.ram_available <= hw.ram_total
    assert any("nvidia-smi" in n for n in hw.notes)
    assert hw.to_dict()["vram_total"] == 0


def test_given_hardware():
    hw = Hardware.given(16, 24)
    assert hw.ram_total == 16 * 10**9 and hw.vram_total == 24 * 10**9
    assert hw.ram_source == "given" and len(hw.gpus) == 1
    assert Hardware.given(8).gpus == []


def test_cpu_model(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n")
    assert hardware.cpu_model(cpuinfo) == "AMD EPYC 7763 64-Core Processor"
    assert isinstance(hardware.cpu_model(tmp_path / "missing"), str)
