"""Captioning metrics of the COCO protocol: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (``pycocoevalcap``).

All captions are lowercased and tokenised with the PTB tokenizer and punctuation tokens dropped,
then scored by pycocoevalcap's own scorers (BLEU, ROUGE-L and CIDEr-D are pure Python).

Java, where the COCO protocol needs it:

* the PTB tokenizer (``stanford-corenlp-3.4.1.jar``) and METEOR 1.5 (``meteor-1.5.jar``) run on any
  Java >= 8 (Debian's OpenJDK 17 works). They are called here with absolute jar paths and temporary
  files in the system temp folder, so a read-only site-packages is fine (pycocoevalcap's own
  tokenizer wrapper writes its temp file inside the installed package);
* without ``java`` on PATH the captions are tokenised by :func:`simple_tokenize`, a pure-Python
  approximation of PTB (lowercase; ``n't``/``'s``/``'re``... split off; brackets, quotes and the
  punctuation marks dropped; hyphenated words, ``1,000`` and ``3.5`` kept whole), and METEOR is
  left out with the note ``METEOR unavailable: install a Java runtime (apt-get install
  default-jre-headless)``. Scores then differ slightly from the COCO numbers (never for plain
  lowercase words);
* SPICE is never computed: it downloads Stanford CoreNLP models at start-up.

CIDEr-D takes its document frequencies from the references of the set being scored, so it is
only comparable between models scored on the same samples (never with COCO leaderboard numbers).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from ...errors import InvalidRequest
from .base import Score

__all__ = ["CaptionMetrics", "close_meteor", "java_available", "ptb_tokenize", "simple_tokenize"]

METEOR_UNAVAILABLE = "METEOR unavailable: install a Java runtime (apt-get install default-jre-headless)"
SPICE_NOTE = "SPICE not computed: it downloads Stanford CoreNLP models at run time (not available offline)"
# pycocoevalcap's list: tokens dropped after PTB tokenisation (brackets come out as -lrb- etc. and stay).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_METEOR_TIMEOUT_S = 600


def _package_dir() -> Path:
    import pycocoevalcap

    return Path(next(iter(pycocoevalcap.__path__)))


@cache
def java_available() -> bool:
    java = shutil.which("java")
    if not java:
        return False
    try:
        return subprocess.run([java, "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenise with Stanford's PTBTokenizer as pycocoevalcap does (needs Java)."""
    jar = _package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    lines = [t.replace("\r", " ").replace("\n", " ") for t in texts]
    with tempfile.TemporaryDirectory(prefix="imgscribe-ptb-") as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
               "-lowerCase", "-encoding", "utf-8", str(path)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"PTB tokenizer failed: {proc.stderr.decode(errors='replace')[-300:]}")
    out = proc.stdout.decode("utf-8").split("\n")
    if len(out) < len(lines):
        raise RuntimeError(f"PTB tokenizer returned {len(out)} lines for {len(lines)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in out[: len(lines)]]


_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ", "{": " -lcb- ", "}": " -rcb- "}
_CONTRACTION = re.compile(r"(\w)(n't|'s|'re|'m|'ve|'ll|'d)\b")
_TOKEN = re.compile(r"-[lr][rsc]b-|n't|'(?:s|re|m|ve|ll|d)\b|\w+(?:[-.,/&']\w+)*|\.\.\.|--|[!?]+|\S")


def simple_tokenize(text: str) -> str:
    """A pure-Python approximation of pycocoevalcap's PTB tokenisation (see the module docstring)."""
    text = text.lower().replace("\u2019", "'").replace('"', " ")
    for bracket, token in _BRACKETS.items():
        text = text.replace(bracket, token)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quote marks, not apostrophes
    text = _CONTRACTION.sub(r"\1 \2", text)
    return " ".join(t for t in _TOKEN.findall(text) if t not in PUNCTUATIONS)


class _Meteor:
    """METEOR 1.5 in ``-stdio`` mode, as pycocoevalcap drives it, with a clean shutdown and a timeout."""

    def __init__(self) -> None:
        folder = _package_dir() / "meteor"
        cmd = ["java", "-jar", "-Xmx2G", str(folder / "meteor-1.5.jar"), "-", "-", "-stdio", "-l", "en", "-norm"]
        self.proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)  # fmt: skip

    def _ask(self, line: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((line + "\n").encode("utf-8"))
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("METEOR stopped answering")
        return reply.decode("utf-8").strip()

    def score(self, references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[float, list[float]]:
        watchdog = threading.Timer(_METEOR_TIMEOUT_S, self.proc.kill)
        watchdog.start()
        try:
            stats = []
            for refs, hyp in zip(references, hypotheses):
                fields = [_meteor_clean(r) for r in refs] + [_meteor_clean(hyp)]
                stats.append(self._ask(" ||| ".join(["SCORE", *fields])))
            assert self.proc.stdout
            scores = [float(self._ask(" ||| ".join(["EVAL", *stats])))]
            scores += [float(self.proc.stdout.readline().decode().strip()) for _ in range(len(stats))]
        finally:
            watchdog.cancel()
        # The reply to EVAL is one line per segment, then the corpus score.
        per, corpus = scores[:-1], scores[-1]
        return corpus, per

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait(timeout=30)


_shared: _Meteor | None = None
_shared_lock = threading.Lock()


def _meteor_process() -> _Meteor:
    """One METEOR process for the whole run (it takes ~25 s to start), restarted if it died."""
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        _shared = _Meteor()
    return _shared


def close_meteor() -> None:
    """Stop the shared METEOR process (the harness calls this when a run is scored)."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


atexit.register(close_meteor)


def _meteor_clean(text: str) -> str:
    return " ".join(text.replace("|||", " ").split())


class CaptionMetrics:
    name = "caption"

    def __init__(self, tokenizer: str = "auto", meteor: bool | None = None):
        """``tokenizer``: "ptb" (Java), "simple" (pure Python) or "auto" (PTB when Java runs).
        ``meteor``: True, False, or None for "when Java runs"."""
        if tokenizer not in ("auto", "ptb", "simple"):
            raise ValueError("tokenizer must be 'auto', 'ptb' or 'simple'")
        self.tokenizer = tokenizer
        self.meteor = meteor

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Score:
        try:
            from pycocoevalcap.bleu.bleu import Bleu
            from pycocoevalcap.cider.cider import Cider
            from pycocoevalcap.rouge.rouge import Rouge
        except ImportError:
            raise InvalidRequest("captioning metrics need pycocoevalcap: pip install 'imgscribe[eval]'") from None

        if any(not refs for refs in references):
            raise ValueError("every sample needs at least one reference caption")
        notes: list[str] = []
        hyps, refs = self._tokenize(predictions, references, notes)
        gts = {i: list(r) for i, r in enumerate(refs)}
        res = {i: [h] for i, h in enumerate(hyps)}
        values: dict[str, float] = {}
        per: list[dict[str, float]] = [{} for _ in hyps]
        if not hyps:
            return Score({}, [], ["no samples"])
        with contextlib.redirect_stdout(io.StringIO()):  # BLEU prints its counts
            bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            values[f"bleu{n + 1}"] = float(bleu[n])
            for i, v in enumerate(bleu_per[n]):
                per[i][f"bleu{n + 1}"] = float(v)
        rouge, rouge_per = Rouge().compute_score(gts, res)
        cider, cider_per = Cider().compute_score(gts, res)
        values["rouge_l"], values["cider_d"] = float(rouge), float(cider)
        for i in range(len(hyps)):
            per[i]["rouge_l"], per[i]["cider_d"] = float(rouge_per[i]), float(cider_per[i])
        self._meteor(refs, hyps, values, per, notes)
        notes.append(SPICE_NOTE)
        notes.append(
            f"CIDEr-D document frequencies come from this set's {len(hyps)} samples' references: "
            "comparable between models on the same samples, not with COCO leaderboard numbers"
        )
        return Score(values, per, notes)

    def _tokenize(self, predictions, references, notes) -> tuple[list[str], list[list[str]]]:
        texts = list(predictions) + [r for refs in references for r in refs]
        use_ptb = self.tokenizer == "ptb" or (self.tokenizer == "auto" and java_available())
        tokens: list[str] | None = None
        if use_ptb:
            try:
                tokens = ptb_tokenize(texts)
                notes.append("tokenizer: PTB (Stanford CoreNLP 3.4.1, as pycocoevalcap)")
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
                if self.tokenizer == "ptb":
                    raise
                notes.append(f"PTB tokenizer failed ({exc}); used the pure-Python approximation")
        elif self.tokenizer == "auto":
            notes.append(
                "PTB tokenizer unavailable (no Java runtime: apt-get install default-jre-headless); "
                "captions tokenised with the pure-Python approximation (scores may differ slightly)"
            )
        if tokens is None:
            tokens = [simple_tokenize(t) for t in texts]
            if self.tokenizer == "simple":
                notes.append("tokenizer: pure-Python approximation of PTB")
        hyps = tokens[: len(predictions)]
        refs, pos = [], len(predictions)
        for r in references:
            refs.append(tokens[pos : pos + len(r)])
            pos += len(r)
        return hyps, refs

    def _meteor(self, refs, hyps, values, per, notes) -> None:
        wanted = self.meteor if self.meteor is not None else True
        if not wanted:
            notes.append("METEOR not computed (switched off)")
            return
        if not java_available():
            if self.meteor:
                raise InvalidRequest(METEOR_UNAVAILABLE)
            notes.append(METEOR_UNAVAILABLE)
            return
        with _shared_lock:
            try:
                corpus, scores = _meteor_process().score(refs, hyps)
            except (OSError, RuntimeError, ValueError) as exc:
                notes.append(f"METEOR failed: {exc}")
                if _shared is not None:
                    _shared.proc.kill()  # a fresh process next time
                return
        values["meteor"] = corpus
        for i, v in enumerate(scores):
            per[i]["meteor"] = v

