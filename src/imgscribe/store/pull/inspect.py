"""Inspect before downloading: read a remote GGUF's header with HTTP Range requests and decide, from
the blob itself, whether the pinned llama-server (llama.cpp b11434) can load it.

A verdict is one of

- ``use``: pull it; what is worth knowing goes into the manifest (``info.model_info``): a GGUF
  without ``tokenizer.chat_template`` is prompted in ChatML by llama-server, which may not be the
  model's format;
- ``translate``: its metadata or tensor layout differs from what llama.cpp expects (Ollama's
  single-file vision models, old LLaVA projectors without ``clip.projector_type``, Llama 3 models that
  stop at ``<|end_of_text|>``): the pull translates it after the download (``store/translate``), and
  the translation's result is judged here first, from the headers it would write; a layout with no
  translation is refused with the alternative;
- ``refuse``: nothing would (``mllama``: llama.cpp has no implementation).

What llama.cpp b11434 knows comes from its source (``src/llama-arch.cpp`` ``LLM_ARCH_NAMES``,
``tools/mtmd/clip-impl.h`` ``PROJECTOR_TYPE_NAMES``), read from the strings of the built libraries.
The alternatives are llama.cpp's own list (``docs/multimodal.md``) and Hugging Face checkpoints the
transformers engine runs; see ``/work/shared/notes/ollama-library.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from ...formats import checkpoints
from ...formats.gguf import GGUFHeader, read_gguf_header
from .. import translate
from ..translate import Translation
from .errors import PullError, Unsupported
from .http import _Retry, check_response, transport_error

__all__ = ["HEADER_FIRST", "LLAMA_ARCHITECTURES", "PROJECTOR_TYPES", "Verdict", "check_model", "check_projector", "remote_header"]

#: ``general.architecture`` values llama.cpp b11434 loads (text models; ``clip`` is a projector).
LLAMA_ARCHITECTURES = frozenset("""
llama llama4 deci falcon grok gpt2 gptj gptneox mpt baichuan starcoder refact bert modern-bert nomic-bert
nomic-bert-moe neo-bert jina-bert-v2 jina-bert-v3 eurobert bloom stablelm qwen qwen2 qwen2moe qwen2vl qwen3
qwen3moe qwen3next qwen3vl qwen3vlmoe qwen35 qwen35moe clef qwen4exp phi2 phi3 phimoe plamo plamo2 plamo3
codeshell orion internlm2 minicpm minicpm3 gemma gemma2 gemma3 gemma3n gemma4 gemma4-assistant gemma-embedding
starcoder2 mamba mamba2 maple jamba falcon-h1 xverse command-r cohere2 cohere2moe dbrx olmo olmo2 olmoe
muse-glimmer openelm arctic deepseek deepseek2 deepseek2-ocr deepseek32 deepseek4 chatglm glm4 glm4moe glm-dsa
bitnet t5 t5encoder jais jais2 nemotron nemotron_h nemotron_h_moe exaone exaone4 exaone-moe rwkv6 rwkv6qwen2
rwkv7 arwkv7 granite granitemoe granitehybrid graniteswitch granite_swa chameleon wavtokenizer-dec plm
bailingmoe bailingmoe2 bailingmoe3 dots1 dots3note arcee afmoe laguna ernie4_5 ernie4_5-moe hunyuan-moe
hunyuan-dense hunyuan_vl hy_v3 hy_v4 smollm3 gpt-oss lfm2 lfm2moe dream smallthinker llada llada-moe seed_oss
grovemoe apertus minimax-01 hrm_text minimax-m2 minimax-m3 cogvlm rnd1 pangu-embedded mistral3 eagle3 dflash
mistral4 paddleocr mimo2 step35 spark2_5 llama-embed maincoder kimi-linear kimi-k3 glm5-next talkie mellum
nanbeige qwen3tts pockettts
""".split())  # noqa: SIM905 - the names as llama.cpp lists them

#: ``clip.projector_type`` values b11434's ``clip.cpp`` reads.
PROJECTOR_TYPES = frozenset("""
mlp mlp_norm ldp ldpv2 resampler adapter qwen2vl_merger qwen2.5vl_merger qwen3vl_merger ling3vl step3vl gemma3
gemma3nv gemma3na gemma4v gemma4a gemma4uv gemma4ua phi4 idefics3 pixtral ultravox internvl llama4 qwen2a
qwen3a glma qwen2.5o voxtral meralion musicflamingo lfm2 kimivl paddleocr lightonocr cogvlm janus_pro dots_ocr
dots3note_v dots3note_a deepseekocr deepseekocr2 deepseek4v lfm2a glm4v glm5v youtuvl yasa2 kimik25
nemotron_v2_vl exaone4_5 hunyuanvl minicpmv4_6 granite_speech mimovl minimax_m3 granite4_vision mimo_audio
parakeet qwen3tts_spkenc qwen3tts_gen pockettts_spkenc pockettts_gen muse-glimmer
""".split())  # noqa: SIM905 - the names as llama.cpp lists them

#: Ollama's single-file vision architectures -> (llama.cpp-compatible GGUF repositories by size, the default size).
SINGLE_FILE_ALTERNATIVES: dict[str, tuple[dict[str, str], str]] = {
    "gemma3": ({s: f"ggml-org/gemma-3-{s}-it-GGUF" for s in ("4b", "12b", "27b")}, "4b"),
    "qwen25vl": ({s.lower(): f"ggml-org/Qwen2.5-VL-{s}-Instruct-GGUF" for s in ("3B", "7B", "32B", "72B")}, "7b"),
    "llama4": ({"16x17b": "ggml-org/Llama-4-Scout-17B-16E-Instruct-GGUF"}, "16x17b"),  # Scout; no Maverick build
    "mistral3": ({"24b": "ggml-org/Mistral-Small-3.1-24B-Instruct-2503-GGUF"}, "24b"),
}
#: The first header range asked for; each further one is twice as large.
HEADER_FIRST = 64 << 10
#: Keys llama.cpp requires (``get_key`` without a default, ``src/llama-model.cpp``) that some of
#: Ollama's blobs lack (Ollama's compat layer adds them as it loads the file): load fails "key not found".
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {"gemma3": ("attention.layer_norm_rms_epsilon",)}
MLLAMA_CHECKPOINT = "meta-llama/Llama-3.2-11B-Vision-Instruct"
MLLAMA_ARCHITECTURE = "MllamaForConditionalGeneration"
#: Old LLaVA projectors (no ``clip.projector_type``): Hugging Face checkpoints the transformers engine runs.
LLAVA_CHECKPOINTS = {
    "bakllava": "llava-hf/bakLlava-v1-hf",
    "llava:7b": "llava-hf/llava-v1.6-mistral-7b-hf",
    "llava:13b": "llava-hf/llava-v1.6-vicuna-13b-hf",
    "llava:34b": "llava-hf/llava-v1.6-34b-hf",
    "llava:7b-v1.5": "llava-hf/llava-1.5-7b-hf",
    "llava:13b-v1.5": "llava-hf/llava-1.5-13b-hf",
}


@dataclass
class Verdict:
    action: str  # use | translate | refuse
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    #: layer role ("model", "projector") -> how that layer is translated
    translations: dict[str, Translation] = field(default_factory=dict)

    @property
    def changes(self) -> list[str]:
        return [change for t in self.translations.values() for change in t.changes]

    def events(self) -> list[dict[str, Any]]:
        """The verdict as Ollama-style status lines, streamed by ``/api/pull`` and printed by ``pull``
        and ``run`` (a refusal is an error instead: it never gets here)."""
        if self.translations:
            what = "; ".join(t.summary for t in self.translations.values())
            lines = [{"status": f"checked the GGUF headers: imgscribe translates it for llama-server after the "
                                f"download ({what})"}]  # fmt: skip
            lines += [{"status": f"translation: {change}"} for change in self.changes]
        else:
            lines = [{"status": "checked the GGUF headers: llama-server runs this model as published"}]
        return lines + [{"status": f"note: {note}"} for note in self.notes]

    def record(self, model_info: dict[str, Any]) -> None:
        """What the inspection found, in the manifest's ``info.model_info``."""
        model_info["imgscribe.inspection"] = "translated" if self.translations else self.action
        if self.notes:
            model_info["imgscribe.notes"] = list(self.notes)
        if self.translations:
            model_info["imgscribe.translated"] = self.changes


# -- reading a header over HTTP ---------------------------------------------------------------------


def remote_header(client: httpx.Client, url: str, headers: dict[str, str], what: str) -> GGUFHeader:
    """The GGUF header of the file at ``url``, read with Range requests (only as much as it takes)."""

    def fetch(offset: int, size: int) -> bytes:
        # identity: byte ranges of the file itself, never of a compressed answer
        ranged = {**headers, "Range": f"bytes={offset}-{offset + size - 1}", "Accept-Encoding": "identity"}
        for attempt in range(3):
            try:
                with client.stream("GET", url, headers=ranged) as response:
                    if response.status_code == 416:
                        return b""
                    check_response(response, what)
                    skip = offset if response.status_code == 200 else 0  # a server that ignores Range
                    out = bytearray()
                    for chunk in response.iter_bytes():
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        out += chunk
                        if len(out) >= size:
                            break
                    return bytes(out[:size])
            except _Retry as exc:
                if attempt == 2:
                    raise PullError(f"cannot read the header of {what} ({exc}); try again later") from None
            except httpx.TransportError as exc:
                if attempt == 2 or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise transport_error(exc, url) from None
        raise AssertionError("unreachable")  # pragma: no cover

    return read_gguf_header(fetch, what, first=HEADER_FIRST)


# -- verdicts -------------------------------------------------------------------------------------


def _size_of(tag: str, sizes: dict[str, str], default: str) -> str | None:
    """The size a tag names (``12b-it-qat`` -> ``12b``); the default for ``latest`` and tags that name
    none; None for a size that has no llama.cpp build in the list."""
    for size in sorted(sizes, key=len, reverse=True):
        if re.match(rf"{re.escape(size)}(\b|-|$)", tag.lower()):
            return size
    return None if re.match(r"\d", tag) else default


def _instead(arch: str, tag: str) -> str:
    sizes, default = SINGLE_FILE_ALTERNATIVES.get(arch, ({}, ""))
    if not sizes:
        return ""
    size = _size_of(tag, sizes, default)
    if size is None:
        listed = ", ".join(f"hf.co/{r}" for r in sizes.values())
        return f"no llama.cpp build of that size is listed (the builds are: {listed})"
    return f"imgscribe pull hf.co/{sizes[size]}"


def has_vision_inside(header: GGUFHeader) -> bool:
    """Ollama's single-file layout: the vision tower's tensors and keys inside the model GGUF."""
    arch = header.architecture
    if any(k.startswith(f"{arch}.vision.") for k in header.metadata):
        return True
    return any(t.startswith(("v.", "mm.")) for t in header.tensors)


def _mllama(shown: str) -> Unsupported:
    if MLLAMA_ARCHITECTURE in checkpoints.supported_architectures():
        instead = (f"pull the Hugging Face checkpoint instead, which imgscribe runs with its transformers engine: "
                   f"imgscribe pull hf.co/{MLLAMA_CHECKPOINT} (a gated model: accept its licence and set HF_TOKEN)")  # fmt: skip
    else:
        instead = (f"imgscribe's transformers engine does not run the mllama family either, so imgscribe cannot "
                   f"run it (its Hugging Face checkpoint, {MLLAMA_CHECKPOINT}, runs in the transformers library "
                   "itself); pull a vision model llama.cpp runs, such as hf.co/ggml-org/gemma-3-4b-it-GGUF")  # fmt: skip
    return Unsupported(
        f"{shown} is a Llama 3.2 Vision (mllama) model, which no llama.cpp build runs (llama.cpp has no mllama "
        f"implementation; Ollama runs it with patches of its own), and {instead}",
        verdict="refuse",
    )


def check_model(header: GGUFHeader, shown: str, tag: str = "latest", has_projector: bool = False,
                translated: bool = False) -> Verdict:  # fmt: skip
    """The verdict on a model GGUF (the projector, if any, is :func:`check_projector`'s): ``use``, or
    ``translate`` when a translation makes it one llama-server loads (judged on the headers the
    translation would write: ``translated``); raises :class:`Unsupported` for anything else."""
    arch = header.architecture
    if arch == "mllama":
        raise _mllama(shown)
    if header.is_projector:
        raise Unsupported(f"{shown}'s model file is a projector (architecture 'clip'), not a model", verdict="refuse")
    plan = None if translated else translate.plan(header, "model", split=not has_projector)
    if plan is not None:
        previews = plan.previews(header)
        verdict = check_model(previews["model"], shown, tag, has_projector or "projector" in previews, translated=True)
        if "projector" in previews:
            check_projector(previews["projector"], previews["model"], shown)
        verdict.action, verdict.translations = "translate", {"model": plan}
        return verdict
    if not has_projector and has_vision_inside(header):
        alternative = _instead(arch, tag)
        if alternative.startswith("imgscribe pull"):
            instead = f"pull the llama.cpp build instead (a GGUF with its mmproj projector): {alternative}"
        else:
            instead = "pull a build of it that comes as a GGUF with a separate mmproj projector" + (
                f": {alternative}" if alternative else " (hf.co/ORG/REPO)"
            )
        raise Unsupported(
            f"{shown} is one GGUF with its vision encoder inside ({arch}: Ollama's own layout, which Ollama translates "
            f"as it loads it and llama.cpp's llama-server cannot load; imgscribe translates that layout for "
            f"{', '.join(translate.SPLIT_ARCHITECTURES)} but not for {arch}), so "
            f"{instead}",
            verdict="translate",
        )
    if arch and arch not in LLAMA_ARCHITECTURES:
        alternative = _instead(arch, tag)
        instead = f"; {alternative} instead" if alternative.startswith("imgscribe pull") else ""
        raise Unsupported(f"{shown} has architecture '{arch}', which the pinned llama.cpp does not know{instead}")
    missing = [f"{arch}.{k}" for k in REQUIRED_KEYS.get(arch, ()) if f"{arch}.{k}" not in header.metadata]
    if missing:
        alternative = _instead(arch, tag)
        instead = (alternative if alternative.startswith("imgscribe pull")
                   else "a GGUF converted by llama.cpp's own converter (hf.co/ORG/REPO)")  # fmt: skip
        raise Unsupported(
            f"{shown}'s GGUF lacks {', '.join(missing)}, which llama.cpp requires (Ollama adds it as it loads the "
            f"file; imgscribe does not translate it yet), so pull {instead.removeprefix('imgscribe pull ')} instead",
            verdict="translate",
        )
    verdict = Verdict("use")
    if not header.metadata.get("tokenizer.chat_template"):
        verdict.notes.append(
            "the GGUF has no tokenizer.chat_template: llama-server formats its prompts as ChatML, which may not be "
            "the model's own format (set engine_settings.chat_template to fix it)"
        )
    return verdict


def projector_type(header: GGUFHeader) -> str:
    return str(header.metadata.get("clip.vision.projector_type") or header.metadata.get("clip.projector_type") or "")


def projector_problem(projector: GGUFHeader, model: GGUFHeader | None) -> tuple[str, str]:
    """("", "") for a projector llama-server can use with this model, else (verdict, why not)."""
    if not projector.is_projector:
        return "refuse", f"it is not a projector (architecture {projector.architecture!r}, not 'clip')"
    if projector.metadata.get("clip.has_vision_encoder") is False:
        return "refuse", "it has no vision encoder (an audio-only projector)"
    kind = projector_type(projector)
    if not kind:
        return "translate", "it has no clip.projector_type (an old LLaVA/BakLLaVA projector), which llama.cpp refuses"
    if kind not in PROJECTOR_TYPES:
        return "refuse", f"its projector type '{kind}' is not one the pinned llama.cpp knows"
    width = _projector_width(projector)
    wanted = model.metadata.get(f"{model.architecture}.embedding_length") if model else None
    if width and isinstance(wanted, int) and wanted and width != wanted:
        return "refuse", f"it projects to width {width} and the model's embeddings are {wanted} wide (another model's)"
    return "", ""


def _projector_width(header: GGUFHeader) -> int:
    """The width a ``mlp``/``mlp_norm`` projector projects to (what clip.cpp's ``clip_n_mmproj_embd``
    reads: the output of its last 2-D ``mm.N.weight``); 0 for other types, which are not checked.
    (``clip.vision.projection_dim`` is CLIP's own projection, not this.)"""
    if projector_type(header) not in ("mlp", "mlp_norm"):
        return 0
    numbered = [(int(m.group(1)), shape) for name, (shape, _) in header.tensors.items()
                if (m := re.fullmatch(r"mm\.(\d+)\.weight", name)) and len(shape) == 2]  # fmt: skip
    return int(max(numbered)[1][1]) if numbered else 0


def check_projector(projector: GGUFHeader, model: GGUFHeader | None, shown: str, alternative: str = "") -> Translation | None:
    """None for a projector layer the pinned llama-server uses as it is, its translation for one that a
    translation makes usable; raises :class:`Unsupported` for any other."""
    verdict, why = projector_problem(projector, model)
    if not verdict:
        return None
    plan = translate.plan(projector, "projector") if verdict == "translate" else None
    if plan is not None:
        translated = plan.previews(projector)["projector"]
        if not projector_problem(translated, model)[0]:
            return plan
    instead = alternative or "a GGUF build whose mmproj has a clip.projector_type, or its Hugging Face checkpoint"
    translation = " (imgscribe does not translate it yet)" if verdict == "translate" else ""
    raise Unsupported(f"{shown}'s projector cannot be used: {why}{translation}; pull {instead} instead", verdict=verdict)


def llava_alternative(model: str, tag: str) -> str:
    """A checkpoint the transformers engine runs, for an Ollama llava/bakllava tag with an old projector."""
    key = "llava:" + ("7b-v1.5" if "7b-v1.5" in tag else "13b-v1.5" if "13b-v1.5" in tag else tag.split("-")[0])
    repo = LLAVA_CHECKPOINTS.get(model) or LLAVA_CHECKPOINTS.get(key if model == "llava" else "")
    if model == "llava" and repo is None:
        repo = LLAVA_CHECKPOINTS["llava:7b"]
    return f"hf.co/{repo} (its Hugging Face checkpoint, run by the transformers engine)" if repo else ""

