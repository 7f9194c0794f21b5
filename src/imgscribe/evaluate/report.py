"""The outputs of an evaluation: ``results.json``, ``samples.jsonl``, ``report.html``, a terminal table.

``report.html`` is one self-contained file (inline CSS, plots as base64 PNG, no scripts, nothing
fetched): the leaderboard, then for each task its data set, provenance, prompt and settings, the
scores with their 95 % intervals, quality-against-latency and quality-against-memory plots, the
breakdown by group, notes, and a few answers side by side.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from .metrics import LOWER_IS_BETTER

__all__ = ["host_facts", "load_results", "print_table", "render_html", "table_rows", "write_report"]

SCHEMA = "imgscribe.eval/1"
_SPEED_KEYS = ("latency", "tok/s", "memory")
#: values shown as they are (not x100)
_RAW = frozenset({"mentions_per_caption"})


def host_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                             "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine()}  # fmt: skip
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["memory_bytes"] = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a probe
        pass
    return facts


# --------------------------------------------------------------------------- files


def write_report(out: Path, results: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Path]:
    from .harness import iter_lines, write_json

    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "samples": out / "samples.jsonl", "html": out / "report.html"}
    write_json(paths["results"], results)
    tmp = paths["samples"].with_name(".samples.jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(iter_lines(rows))
    os.replace(tmp, paths["samples"])
    tmp = paths["html"].with_name(".report.html.tmp")
    tmp.write_text(render_html(results, rows), encoding="utf-8")
    os.replace(tmp, paths["html"])
    return paths


def load_results(folder: Path) -> dict[str, Any]:
    path = Path(folder)
    path = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InvalidRequest(f"{folder}: no results.json (run 'imgscribe eval ... --out {folder}' first)") from None
    except ValueError as exc:
        raise InvalidRequest(f"{path}: not valid JSON ({exc})") from None
    if data.get("schema") != SCHEMA:
        raise InvalidRequest(f"{path}: not an imgscribe eval result (schema {data.get('schema')!r})")
    return data


# --------------------------------------------------------------------------- numbers


def fmt_score(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if key in _RAW else f"{100 * value:.1f}"


def fmt_bytes(value: int | None) -> str:
    if not value:
        return "–"
    return f"{value / 1e9:.2f} GB" if value >= 1e9 else f"{value / 1e6:.0f} MB"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _label(key: str) -> str:
    return key + (" ↓" if key in LOWER_IS_BETTER else "")


def table_rows(results: dict[str, Any], run: str = "") -> list[dict[str, str]]:
    """One row per model x task, for the terminal and the HTML leaderboard."""
    rows = []
    for r in results["results"]:
        model = results["models"].get(r["model"], {})
        memory = model.get("memory", {})
        primary = r.get("primary", "")
        ci = r.get("ci95", {}).get(primary)
        value = fmt_score(primary, r.get("primary_value"))
        if ci:
            value += f" [{fmt_score(primary, ci[0])}–{fmt_score(primary, ci[1])}]"
        tps = r.get("tokens_per_s")
        rows.append({
            "run": run, "model": r["model"], "task": r["task"], "n": str(r["n"]), "metric": _label(primary),
            "score": value, "latency": fmt_seconds(r["latency_s"].get("mean")),
            "tok/s": f"{tps:.1f}" if tps else "–", "memory": fmt_bytes(memory.get("memory_bytes")),
            "errors": str(r.get("n_errors", 0)),
        })  # fmt: skip
    return rows


def print_table(results: Sequence[tuple[str, dict[str, Any]]], file: Any = None) -> None:
    """The leaderboard of one or more runs in the terminal (scores x100, 95 % interval in brackets)."""
    from rich.console import Console
    from rich.table import Table

    stream = file or sys.stdout
    # A terminal wraps to its width; a pipe or a file gets whole lines (never "echo-…").
    console = Console(file=stream, width=None if stream.isatty() else 220)
    several = len(results) > 1
    table = Table(title="imgscribe eval (scores x100; ↓ lower is better)", title_justify="left")
    columns = (["run"] if several else []) + ["model", "task", "n", "metric", "score", *_SPEED_KEYS, "errors"]
    for col in columns:
        table.add_column(col, justify="right" if col in ("n", "score", *_SPEED_KEYS, "errors") else "left",
                         overflow="fold")
    for run, data in results:
        for row in table_rows(data, run):
            table.add_row(*(row[c] for c in columns))
    console.print(table)
    for run, data in results:
        for name, task in data["tasks"].items():
            prompt = task["prompt"].replace("\n", "\\n")
            console.print(f"[dim]{(run + ': ') if several else ''}{name}: n={task['n']} of {task['total']}, "
                          f"prompt {prompt!r}, options {json.dumps(task['options'])}[/dim]", highlight=False)  # fmt: skip


# --------------------------------------------------------------------------- plots


def _plots(results: dict[str, Any], task: str) -> str | None:
    """A PNG (base64) with the task's main score against latency and against memory, one point a model."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    points = []
    for r in results["results"]:
        if r["task"] != task or r.get("primary_value") is None:
            continue
        memory = results["models"].get(r["model"], {}).get("memory", {}).get("memory_bytes")
        points.append((r["model"], 100 * r["primary_value"], r["latency_s"].get("mean"), memory))
    if not points:
        return None
    primary = next(r["primary"] for r in results["results"] if r["task"] == task)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=90)
    for ax, index, xlabel in ((axes[0], 2, "mean latency per sample (s)"), (axes[1], 3, "memory (MB)")):
        shown = [(name, y, x if index == 2 else x / 1e6) for name, y, *rest in points
                 for x in [rest[index - 2]] if x]  # fmt: skip
        for name, y, x in shown:
            ax.scatter([x], [y], s=60)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
        xs, ys = [x for _, _, x in shown], [y for _, y, _ in shown]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 2, max(xs) * 8)  # room for the labels
        elif xs:
            ax.set_xlim(0, max(xs) * 1.3)  # from zero: distances on the plot are ratios
        if ys:
            ax.set_ylim(0, max(max(ys) * 1.15, 1e-9) if max(ys) > 0 else 1)
        if not shown:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{primary} x100" + (" (lower is better)" if primary in LOWER_IS_BETTER else ""))
        ax.grid(True, alpha=0.3)
    fig.suptitle(task, fontsize=11)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.14, top=0.88, wspace=0.25)  # tight_layout is slow
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.3rem .6rem;vertical-align:top}
th{background:#f5f5f5;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.6rem;white-space:pre-wrap;font-size:.85rem}.note{color:#666;font-size:.85rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem}dt{font-weight:600}dd{margin:0}
img{max-width:100%}.wide{overflow-x:auto}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if n else ''}>{_e(c)}</td>" for c, n in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    return f"<div class=wide><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def render_html(results: dict[str, Any], rows: Sequence[dict[str, Any]] = ()) -> str:
    tasks = results["tasks"]
    models = results["models"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>imgscribe eval</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>imgscribe eval: which model for these images?</h1>",
             f"<p class=note>{_e(results['created'])} · imgscribe {_e(results['imgscribe_version'])} · "
             f"{_e(results['host'].get('cpu', ''))}, {_e(results['host'].get('cpu_count', ''))} cores"
             f"{', GPU ' + _e(results['host']['gpu']) if results['host'].get('gpu') else ''} · "
             f"{_e(results['host'].get('platform', ''))} · scores x100, 95 % bootstrap interval in brackets where "
             "the score is a mean over samples; ↓ lower is better</p>"]  # fmt: skip

    # Leaderboard: one row per model, the main score of each task, then speed and memory.
    header = ["model", *(f"{t} · {_label(tasks[t]['primary'])}" for t in tasks), "mean latency", "tokens/s",
              "memory", "load", "errors"]  # fmt: skip
    body = []
    for name, model in models.items():
        by_task = {r["task"]: r for r in results["results"] if r["model"] == name}
        cells: list[str] = [name]
        for t in tasks:
            r = by_task.get(t)
            cells.append(fmt_score(tasks[t]["primary"], r.get("primary_value")) if r else "–")
        mine = list(by_task.values())
        lat = [r["latency_s"]["mean"] for r in mine if r["latency_s"].get("mean") is not None]
        tps = [r["tokens_per_s"] for r in mine if r.get("tokens_per_s")]
        cells += [fmt_seconds(sum(lat) / len(lat) if lat else None), f"{sum(tps) / len(tps):.1f}" if tps else "–",
                  fmt_bytes(model.get("memory", {}).get("memory_bytes")), fmt_seconds(model.get("load_s")),
                  str(sum(r.get("n_errors", 0) for r in mine))]  # fmt: skip
        body.append(cells)
    parts.append("<h2>Leaderboard</h2>")
    parts.append(_table(header, body, [False] + [True] * (len(header) - 1)))
    parts.append(_models_html(models))

    for name, task in tasks.items():
        parts.append(_task_html(name, task, results, [r for r in rows if r.get("task") == name]))
    if results.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in results["notes"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _models_html(models: dict[str, Any]) -> str:
    rows = []
    for name, m in models.items():
        info = m.get("info", {})
        memory = m.get("memory", {})
        how = "engine-reported" if memory.get("runner_memory_bytes") else "process RSS growth"
        rows.append([name, info.get("engine", ""), info.get("family", ""), info.get("parameter_size", ""),
                     info.get("quantization_level", ""), _short_digest(m.get("digest", "")),
                     f"{fmt_bytes(memory.get('memory_bytes'))} ({how}; measured {memory.get('measured', 'never')})",
                     m.get("error", "")])  # fmt: skip
    return "<h2>Models</h2>" + _table(
        ["model", "engine", "family", "size", "quantisation", "digest (cache key)", "memory", "error"], rows
    )


def _short_digest(digest: str) -> str:
    algo, _, value = digest.rpartition(":")
    return f"{algo + ':' if algo else ''}{value[:12]}" if value else ""


def _task_html(name: str, task: dict[str, Any], results: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    out = [f"<h2>{_e(name)}</h2><dl>"]
    facts = [("data set", task["dataset"]), ("source", task["source"]), ("licence", task.get("licence") or "–"),
             ("samples", f"{task['n']} of {task['total']}"), ("metrics", ", ".join(task["metrics"])),
             ("answer clean-up", task["postprocess"]), ("options", json.dumps(task["options"]))]  # fmt: skip
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts]
    out.append(f"</dl><p><b>prompt</b> (<code>{{question}}</code> is each sample's question):</p>"
               f"<pre>{_e(task['prompt'])}</pre>")  # fmt: skip
    mine = [r for r in results["results"] if r["task"] == name]
    keys = list(dict.fromkeys(k for r in mine for k in r["scores"]))
    body = []
    for r in mine:
        cells = [r["model"], str(r["n"])]
        for k in keys:
            cell = fmt_score(k, r["scores"].get(k))
            if k in r.get("ci95", {}):
                lo, hi = r["ci95"][k]
                cell += f" [{fmt_score(k, lo)}–{fmt_score(k, hi)}]"
            cells.append(cell)
        lat = r["latency_s"]
        tps = r.get("tokens_per_s")
        cells += [fmt_seconds(lat.get("mean")), fmt_seconds(lat.get("p95")), f"{tps:.1f}" if tps else "–",
                  f"{r['output_tokens_mean']:.1f}" if r.get("output_tokens_mean") is not None else "–",
                  f"{r['n_cached']}", f"{r['n_errors']}"]  # fmt: skip
        body.append(cells)
    header = ["model", "n", *(_label(k) for k in keys), "latency mean", "p95", "tokens/s", "output tokens",
              "cached", "errors"]  # fmt: skip
    out.append(_table(header, body, [False] + [True] * (len(header) - 1)))
    png = _plots(results, name)
    if png:
        out.append(f'<img alt="{_e(name)}: score against latency and memory" src="data:image/png;base64,{png}">')
    groups = sorted({g for r in mine for g in r.get("groups", {})})
    if groups:
        gkeys = [k for k in keys if any(k in r["groups"].get(g, {}) for r in mine for g in groups)]
        gbody = [[r["model"], g, str(r["groups"][g]["n"]), *(fmt_score(k, r["groups"][g].get(k)) for k in gkeys)]
                 for r in mine for g in groups if g in r["groups"]]  # fmt: skip
        out.append("<p><b>by group</b></p>" + _table(["model", "group", "n", *gkeys], gbody,
                                                      [False, False, True] + [True] * len(gkeys)))  # fmt: skip
    notes = list(dict.fromkeys(n for r in mine for n in r.get("notes", [])))
    errors = [f"{r['model']}: {e}" for r in mine for e in r.get("errors", [])]
    if notes or errors:
        out.append("<ul class=note>" + "".join(f"<li>{_e(n)}</li>" for n in [*notes, *errors]) + "</ul>")
    out.append(_examples(rows))
    return "\n".join(out)


def _examples(rows: Sequence[dict[str, Any]], count: int = 3) -> str:
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_sample.setdefault(r["sample"], []).append(r)
    picked = list(by_sample.items())[:count]
    if not picked:
        return ""
    models = list(dict.fromkeys(r["model"] for r in rows))
    body = []
    for sample, answers in picked:
        refs = answers[0].get("references") or answers[0].get("objects") or [answers[0].get("label")]
        by_model = {a["model"]: a for a in answers}
        body.append([sample, "; ".join(str(x) for x in (refs or [])[:3]),
                     *((by_model[m].get("error") or by_model[m].get("prediction", ""))[:300] if m in by_model else "–"
                       for m in models)])  # fmt: skip
    return "<p><b>first answers</b></p>" + _table(["sample", "references", *models], body)
