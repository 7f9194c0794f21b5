"""Every benchmark in bench/ runs in its ``--quick`` mode and prints its ratios, so that none can rot
unseen (issue 19). Figures are not checked: only that it exits 0 and prints its ratio line.

Each runs in its own process, as ``make bench`` runs it; about a minute for all on two cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("[!_]*.py"))
# The line each prints beside its baseline; a new benchmark gets the generic check until it is listed.
RATIO = {
    "batch.py": r"describe\s+[\d.]+\s+[\d.]+x",
    "builtin.py": r"ratio\s+: a description takes [\d.]+x",
    "cli_start.py": r"imgscribe list\s+\d+\s+\d+\s+[\d.]+x\s+[\d.]+x",
    "engines.py": r"llamacpp / transformers: image encode [\d.]+x",
    "hostile_memory.py": r"ratio: peak / bound\s+[\d.]+",
    "image_budget.py": r"default/max time to first token [\d.]+x",
    "intake.py": r"ratio = intake\(path\) / Pillow",
    "peers.py": r"imgscribe /v1/chat/completions\s+[\d.]+\s+[\d.]+\s+[\d.]+x",
    "server.py": r"ratio HTTP / in-process(\s+[\d.]+){2,}",
}
GENERIC = r"ratio|\b[\d.]+x\b"
NEEDS_LLAMA_SERVER = {"engines.py", "image_budget.py", "peers.py"}


def _llama_server() -> str | None:
    """Why the llama.cpp benchmarks cannot run here, or None when they can."""
    from imgscribe.engines.llamacpp.binary import server_binary
    from imgscribe.errors import EngineFailed

    try:
        server_binary()
    except EngineFailed as exc:
        return str(exc)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick_and_prints_its_ratio(script, tmp_path):
    if script in NEEDS_LLAMA_SERVER and (why := _llama_server()):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{script} needs llama-server: {why}")
        pytest.skip(f"{script} needs llama-server: {why}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSCRIBE_") or k == "IMGSCRIBE_LLAMA_SERVER"}
    env["IMGSCRIBE_MODELS"] = str(tmp_path / "models")  # the benchmarks make their own stores; never the user's
    out = subprocess.run([sys.executable, str(BENCH / script), "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, f"{script} --quick exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert re.search(RATIO.get(script, GENERIC), out.stdout), f"{script} --quick printed no ratio:\n{out.stdout[-3000:]}"
