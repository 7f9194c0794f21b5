"""How long the commands that load no model take to start and finish, beside the interpreter's own
start, measured in the same run.

    python bench/cli_start.py [--runs 7] [--quick]

Runs ``python -m imgscribe COMMAND`` for ``--help``, ``--version``, ``list``, ``ps`` and ``show
builtin`` ``--runs`` times each (after one warm-up run that writes the bytecode cache, as an
installed package has it; the cache goes to a temporary folder), with an empty models folder and no
server (``IMGSCRIBE_HOST`` at a closed port: the in-process path). Prints the median wall time and
CPU time (user + system: steadier than wall time on a busy machine) of each, the ratio to the
interpreter's start (``python -c pass``) and to the 0.3 s target (issue 19). ``--quick``: 3 runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (["--help"], ["--version"], ["list"], ["ps"], ["show", "builtin"])
TARGET = 0.3  # seconds


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns


def timed(argv: list[str], env: dict, runs: int) -> tuple[float, float]:
    """Median (wall s, CPU s) of ``runs`` runs of ``argv``, after one warm-up run."""
    subprocess.run(argv, env=env, capture_output=True, check=False)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run(argv, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {out.returncode}: {out.stderr.decode()[-2000:]}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (median; default 7)")
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs

    with tempfile.TemporaryDirectory(prefix="imgscribe-bench-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSCRIBE_") and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(IMGSCRIBE_MODELS=str(Path(tmp) / "models"), IMGSCRIBE_HOST=f"127.0.0.1:{closed_port()}",
                   PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))  # fmt: skip
        floor_wall, floor_cpu = timed([sys.executable, "-c", "pass"], env, runs)
        load = os.getloadavg()[0]
        print(f"imgscribe CLI start: {runs} runs each (median), {os.cpu_count()} CPUs, load average {load:.1f}; "
              f"interpreter start (python -c pass) {floor_wall * 1e3:.0f} ms wall, {floor_cpu * 1e3:.0f} ms CPU\n")  # fmt: skip
        rows = [["command", "wall ms", "CPU ms", "CPU / interpreter", "CPU / 0.3 s target"]]
        for command in COMMANDS:
            wall, cpu = timed([sys.executable, "-m", "imgscribe", *command], env, runs)
            rows.append([f"imgscribe {' '.join(command)}", f"{wall * 1e3:.0f}", f"{cpu * 1e3:.0f}",
                         f"{cpu / max(floor_cpu, 1e-3):.1f}x", f"{cpu / TARGET:.2f}x"])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(row[0].ljust(widths[0]) + "".join(cell.rjust(w + 3) for cell, w in zip(row[1:], widths[1:], strict=True)))
    print("\nratio to target: below 1.00x is within 0.3 s (CPU time; wall time adds what the machine's other work takes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
