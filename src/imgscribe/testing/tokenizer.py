"""A tiny byte-level BPE tokenizer, trained in-process on text that ships with Python itself.

No hub, no download: the corpus is the standard library's own source files (sorted, so the result
is the same on every machine with the same Python), and training takes about half a second. It is
trained once per process; each family then adds its own special tokens.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Iterable, Mapping

VOCAB_SIZE = 1000

_EXTRA = (
    "A photo of a cat sitting on a red sofa. Describe this image. What is in the picture? "
    "The image shows a person, a dog, a car and a tree in front of a house. "
) * 50


def _corpus() -> list[str]:
    root = os.path.dirname(os.__file__)
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "*.py")))[:60]:
        with open(path, encoding="utf-8", errors="ignore") as f:
            texts.append(f.read())
    texts.append(_EXTRA)
    return texts


@functools.lru_cache(maxsize=1)
def _base_json() -> str:
    """The trained BPE (no special tokens), serialised: each family starts from a fresh copy."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def make_tokenizer(
    special_tokens: Iterable[str] = (),
    *,
    extra_special_tokens: Mapping[str, str] | None = None,
    bos: str | None = "<s>",
    eos: str | None = "</s>",
    pad: str | None = "<pad>",
    unk: str | None = "<unk>",
    add_bos: bool = False,
    chat_template: str | None = None,
):
    """A ``PreTrainedTokenizerFast`` with ``special_tokens`` (and the named ``extra_special_tokens``,
    which processors read as ``tokenizer.image_token`` and so on) as single atomic ids."""
    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_base_json())
    base = [t for t in (pad, unk, bos, eos) if t]
    named = list((extra_special_tokens or {}).values())
    every = list(dict.fromkeys([*base, *special_tokens, *named]))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in every])
    if add_bos and bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    kwargs = dict(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)
    if extra_special_tokens:
        kwargs["extra_special_tokens"] = dict(extra_special_tokens)
    if chat_template:
        kwargs["chat_template"] = chat_template
    return PreTrainedTokenizerFast(**kwargs)
