"""Native video through transformers (issue 18): a clip sent to the tiny Qwen2-VL reaches its video
processor as a video (``pixel_values_videos``, ``video_grid_thw``), the prompt's token count is the
one the family's own processor makes of those frames, and the final object says what the clip became."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _transformers_support import checkpoint, ollama_chat  # noqa: E402
from test_video import moving_clip  # noqa: E402

from imgscribe import testing  # noqa: E402
from imgscribe.engines.transformers import prompt  # noqa: E402
from imgscribe.engines.transformers.loading import load_processor  # noqa: E402
from imgscribe.formats.checkpoints import FAMILIES  # noqa: E402
from imgscribe.scheduler import Scheduler  # noqa: E402
from imgscribe.server import create_app  # noqa: E402
from imgscribe.store import Store  # noqa: E402
from imgscribe.store.importer import create_from_path  # noqa: E402
from imgscribe.video import read_video  # noqa: E402

PROMPT = "What happens in this clip?"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    scheduler = Scheduler(store, keep_alive=600, max_loaded=1)
    for family in ("qwen2_vl", "llava_onevision", "smolvlm"):
        create_from_path(store, "tiny-" + family.replace("_", "-"), checkpoint(family))
    with TestClient(create_app(scheduler)) as client:
        yield client
    scheduler.close()


def _reference(family: str, video):
    """The family's own processor's inputs for the clip's frames and the prompt, as the runner sends them."""
    processor = load_processor(checkpoint(family), FAMILIES[testing.ENGINE_FAMILY[family]])
    parts = [{"type": "video", "video": [f.pil for f in video.frames]}, {"type": "text", "text": PROMPT}]
    return processor, prompt.encode(processor, [{"role": "user", "content": parts}], [video])


def test_llava_onevision_takes_a_clip_as_native_video(served):
    """LLaVA-OneVision's processor has a video processor and a <video> token: the clip goes as video
    (pixel_values_videos), its prompt tokens the processor's own."""
    clip = moving_clip(frames=20, fps=5)
    final = ollama_chat(served, "tiny-llava-onevision", PROMPT, [clip], options={"num_predict": 1})[-1]
    [entry] = final["images"]
    assert entry["video"] is True and entry["frames"] == 8
    video = read_video(clip, source_name="messages[0].images[0]")
    processor, reference = _reference("llava_onevision", video)
    video_tokens = int((reference["input_ids"] == processor.video_token_id).sum())
    assert "pixel_values_videos" in reference and "pixel_values" not in reference
    assert video_tokens == entry["tokens"] > len(video.frames)
    assert final["prompt_eval_count"] == reference["input_ids"].shape[1]


def test_smolvlm_takes_a_clip_as_native_video(served):
    """SmolVLM's video processor: the frames with their times in its own prompt ("Frame from ...")."""
    clip = moving_clip(frames=20, fps=5)
    final = ollama_chat(served, "tiny-smolvlm", PROMPT, [clip], options={"num_predict": 1})[-1]
    [entry] = final["images"]
    assert entry["video"] is True and entry["frames"] == 8
    video = read_video(clip, source_name="messages[0].images[0]")
    processor, reference = _reference("smolvlm", video)
    text = processor.tokenizer.decode(reference["input_ids"][0])
    assert "series of eight frames" in text and "Frame from" in text  # the family's own video prompt
    assert entry["tokens"] == int((reference["input_ids"] == processor.image_token_id).sum()) > 0
    assert final["prompt_eval_count"] == reference["input_ids"].shape[1]


def test_qwen2_vl_takes_a_clip_as_native_video(served):
    clip = moving_clip(frames=20, fps=5)
    final = ollama_chat(served, "tiny-qwen2-vl", PROMPT, [clip], options={"num_predict": 1})[-1]
    [entry] = final["images"]
    assert entry["video"] is True and entry["frames"] == len(entry["timestamps"]) > 1

    # the same frames, through the family's own processor, as the runner sent them
    video = read_video(clip, source_name="messages[0].images[0]")
    processor = load_processor(checkpoint("qwen2_vl"), FAMILIES[testing.ENGINE_FAMILY["qwen2_vl"]])
    parts = [{"type": "video", "video": [f.pil for f in video.frames]}, {"type": "text", "text": PROMPT}]
    reference = prompt.encode(processor, [{"role": "user", "content": parts}], [video])
    video_pads = int((reference["input_ids"] == processor.video_token_id).sum())
    grid = reference["video_grid_thw"][0]
    assert video_pads == int(grid.prod()) // processor.video_processor.merge_size**2 == entry["tokens"]
    assert "pixel_values_videos" in reference and "pixel_values" not in reference
    assert final["prompt_eval_count"] == reference["input_ids"].shape[1]
    assert entry["timestamps"] == video.timestamps


def test_qwen2_5_vl_gets_the_sampled_frame_rate():
    """second_per_grid_ts (Qwen2.5-VL's M-RoPE time) is temporal_patch_size / the sampled rate."""
    video = read_video(moving_clip(frames=40, fps=4))  # 10 s
    processor = load_processor(checkpoint("qwen2_5_vl"), FAMILIES[testing.ENGINE_FAMILY["qwen2_5_vl"]])
    parts = [{"type": "video", "video": [f.pil for f in video.frames]}, {"type": "text", "text": PROMPT}]
    out = prompt.encode(processor, [{"role": "user", "content": parts}], [video])
    rate = len(video.frames) / video.duration
    assert float(out["second_per_grid_ts"][0]) == pytest.approx(2 / rate, rel=1e-3)


def test_smolvlm_is_told_each_frames_own_time_when_sampled_at_scene_changes():
    """Scene sampling spaces frames unevenly: the "Frame from m:ss" times in SmolVLM's prompt are the
    frames' own (the video metadata's frame indices are on a 1/100 s grid), not an even spread."""
    from test_video import scene_clip

    video = read_video(scene_clip(), max_tokens=1536, sampling="scenes")
    assert [round(t, 1) for t in video.timestamps] == [0.5, 2.3, 3.2]
    processor = load_processor(checkpoint("smolvlm"), FAMILIES[testing.ENGINE_FAMILY["smolvlm"]])
    parts = [{"type": "video", "video": [f.pil for f in video.frames]}, {"type": "text", "text": PROMPT}]
    text = processor.tokenizer.decode(prompt.encode(processor, [{"role": "user", "content": parts}], [video])["input_ids"][0])
    assert [line.split("Frame from ")[1][:5] for line in text.splitlines() if "Frame from " in line] == \
        ["00:00", "00:02", "00:03"]
