"""Workarounds for transformers 5.x (checked with 5.24.0), each for a problem reproduced here.

1. Without torchvision, ``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor``, ``SmolVLMProcessor`` and
   ``LlavaOnevisionProcessor`` cannot be built: each requires a video processor, and every video
   processor needs torchvision. :func:`processor_class` gives an image-only subclass instead (same
   class name, so a folder it saves looks like the hub's).
2. ``PixtralProcessor`` is decorated ``@requires(torchvision)`` and its module imports a helper from the
   torchvision image processor, although the PIL image processor does the same work. Without
   torchvision the import is pointed at the PIL module.
3. transformers 5.24: ``Llama4ForConditionalGeneration.forward`` reads ``outputs.image_outputs`` from
   the text model's output, which has no such field, so every ``generate`` fails. Patched when the
   field is missing.
4. ``Phi4MultimodalProcessor`` drops its chat template on reload; :mod:`.loading` takes the
   tokenizer's.

Llama 4 and Phi-4-multimodal have torchvision-only image processors: without torchvision they are
refused with a clear message (:data:`NEEDS_TORCHVISION`).
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading

from ...formats.checkpoints import FAMILIES

#: families (imgscribe names) whose image processor exists only with torchvision
NEEDS_TORCHVISION = {f.key for f in FAMILIES.values() if f.needs_torchvision}

_VIDEO_PROCESSOR_FAMILIES = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "smolvlm": "SmolVLMProcessor",
    "llava_onevision": "LlavaOnevisionProcessor",
}
_lock = threading.Lock()
_installed = False
_pixtral = None  # the real PixtralProcessor class, once imported without torchvision


@functools.cache
def has_torchvision() -> bool:
    """Whether transformers sees a torchvision it can use (it imports, beside this torch)."""
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # e.g. "operator torchvision::nms does not exist": built for another torch
        return False
    return True


def install() -> None:
    """Apply the module-level workarounds once (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        if not has_torchvision():
            _pixtral_without_torchvision()
        _llama4_image_outputs()
        _installed = True


def processor_class(family: str):
    """The processor class to build or load ``family``'s processor with, here."""
    install()
    import transformers

    if family == "pixtral" or family == "mistral3":
        return _pixtral or transformers.PixtralProcessor
    name = _VIDEO_PROCESSOR_FAMILIES.get(family)
    if name is None:
        raise KeyError(family)
    base = getattr(transformers, name)
    return base if has_torchvision() else image_only(base)


@functools.cache
def image_only(base: type) -> type:
    """A subclass of ``base`` without its video processor (images work exactly as in ``base``).

    Its ``__init__`` names the same parameters as ``base.__init__`` less ``video_processor``:
    transformers reads them from the code object to decide which saved settings to pass.
    """
    import inspect

    from transformers.processing_utils import ProcessorMixin

    params = [
        p for p in inspect.signature(base.__init__).parameters.values()
        if p.name not in ("self", "video_processor") and p.kind is p.POSITIONAL_OR_KEYWORD
    ]  # fmt: skip
    names = [p.name for p in params]
    if names[:2] != ["image_processor", "tokenizer"]:
        raise TypeError(f"{base.__name__}: unexpected processor signature {names}")
    defaults = {p.name: (None if p.default is p.empty else p.default) for p in params}
    rest = ", ".join(f"{n}={n}" for n in names[2:])
    source = (
        f"def __init__(self, {', '.join(f'{n}=_defaults[{n!r}]' for n in names)}, **kwargs):\n"
        f"    kwargs.pop('video_processor', None)\n"
        # every such processor hands video_processor, third, positionally to ProcessorMixin, which
        # zips it away because this __init__ does not name it
        f"    _base.__init__(self, image_processor, tokenizer, None, {rest + ', ' if rest else ''}**kwargs)\n"
    )
    namespace = {"_base": base, "_defaults": defaults}
    exec(source, namespace)  # noqa: S102  (a generated signature, from the installed class only)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # SmolVLM's override reads video_processor.num_frames; images need only the generic one
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    attrs = {
        "__init__": namespace["__init__"], "_imgscribe_image_only": True, "__module__": base.__module__,
        "__qualname__": base.__qualname__, "__doc__": f"{base.__name__} for images only (no torchvision).",
    }  # fmt: skip
    if "apply_chat_template" in base.__dict__:
        attrs["apply_chat_template"] = apply_chat_template
    return type(base.__name__, (base,), attrs)


def _pixtral_without_torchvision() -> None:
    global _pixtral
    pil = importlib.import_module("transformers.models.pixtral.image_processing_pil_pixtral")
    name = "transformers.models.pixtral.image_processing_pixtral"
    if name not in sys.modules:
        sys.modules[name] = pil
    cls = importlib.import_module("transformers.models.pixtral.processing_pixtral").PixtralProcessor
    _pixtral = cls
    # transformers' lazy modules may be swapped in sys.modules while submodules import: set the name on
    # the current ones (AutoProcessor resolves class names on the model's own subpackage)
    for module in ("transformers", "transformers.models.pixtral"):
        sys.modules[module].PixtralProcessor = cls


def _llama4_image_outputs() -> None:
    try:
        from transformers.models.llama4 import modeling_llama4 as m
    except ImportError:
        return
    fields = getattr(m.MoeCausalLMOutputWithPast, "__dataclass_fields__", {})
    if "image_outputs" in fields or getattr(m.Llama4ForCausalLM.forward, "_imgscribe_patched", False):
        return
    original = m.Llama4ForCausalLM.forward

    @functools.wraps(original)
    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not isinstance(out, tuple) and not hasattr(out, "image_outputs"):
            object.__setattr__(out, "image_outputs", None)
        return out

    forward._imgscribe_patched = True
    m.Llama4ForCausalLM.forward = forward
