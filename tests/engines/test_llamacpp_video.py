"""A clip through llama.cpp (issue 18): a tiny LLaVA-1.5 converted to GGUF gets the clip's sampled
frames as images, with their times in the prompt (engines/frames.py), and reports each frame's cost."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _llamacpp_support import llama_cpp_source, llama_server_binary  # noqa: E402
from _transformers_support import checkpoint  # noqa: E402
from test_video import moving_clip  # noqa: E402

from imgscribe import api  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.import_gguf import manifest_for_gguf  # noqa: E402

pytestmark = pytest.mark.slow


def test_tiny_llava_gets_the_frames_as_images(tmp_path):
    llama_server_binary()
    from imgscribe.engines.llamacpp.convert import convert_many

    [result] = convert_many([(checkpoint("llava15"), tmp_path / "gguf")], outtype="f32", llama_dir=llama_cpp_source())
    if isinstance(result, BaseException):
        raise result
    store = Store(tmp_path / "models")
    store.create("tiny-llava", manifest_for_gguf("tiny-llava", result.model, result.mmproj))
    scheduler = Scheduler(store, num_parallel=0)
    try:
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(moving_clip())
        answer = api.chat("tiny-llava", [{"role": "user", "content": "What happens?", "images": [str(clip)]}],
                          scheduler=scheduler, options={"num_predict": 2, "video_max_tokens": 2048})  # fmt: skip
    finally:
        scheduler.close()
    assert answer.done_reason in ("stop", "length")
    assert len(answer.image_costs) == 4  # one per frame: 2048 tokens in frames of 512
    assert answer.metrics.prompt_eval_count > sum(c["tokens"] for c in answer.image_costs) > 0  # frames and text
