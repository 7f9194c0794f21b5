"""Text in images with RapidOCR (``rapidocr-onnxruntime`` 1.4.4: PP-OCRv4 detector and recogniser,
PP-OCR angle classifier, ONNX models inside the wheel, Apache-2.0).

RapidOCR's detector is used as is (``det_limit_type="max"``: small images are not scaled up, which
keeps them fast), on a copy of the image of at most 1280 pixels. Recognition runs on our
own crops: RapidOCR's tight perspective crops drop spaces and repeated digits on rendered text
("Invoice No.4821 -Total", "55-0199"), while an upright crop with a margin of 10 % of the line
height, scaled up to at least 64 pixels high, read all 24 three-line test documents (DejaVu Sans
and Serif, 16-40 px, several texts) exactly. Lines tilted by up to 20 degrees are turned upright
first (a sign rotated by 2-6 degrees: "OPEN 7AM-5PM" instead of RapidOCR's "OPEN7AM-5PM").
"""

from __future__ import annotations

import math
import threading

import numpy as np
from PIL import Image as PILImage

from .threads import cpu_threads

MIN_SCORE = 0.5  # recogniser confidence below which a line is dropped
DET_MAX_SIDE = 1280  # text detection runs on a copy scaled down to this (recognition on full crops)
MIN_SIDE = 30  # smaller images are scaled up first
UPSCALED_MAX_SIDE = 8192  # ... but never past this long side
CROP_MARGIN = 0.10  # of the line height, on every side
CROP_MIN_HEIGHT = 64  # crops lower than this are scaled up (cubic) before recognition
MAX_TILT_DEGREES = 2.0  # lines flatter than this are cropped as they are
MAX_DESKEW_DEGREES = 20.0  # up to this tilt a line is turned upright; steeper: perspective crop
RETRY_SCORE = 0.8  # lines read with less confidence are also tried upside down

_load_lock = threading.Lock()
_run_lock = threading.Lock()  # RapidOCR's detector keeps per-call state on itself
_engine = None


def load():
    """Create the RapidOCR engine once per process (thread-safe)."""
    global _engine
    if _engine is not None:
        return _engine
    with _load_lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR
            from rapidocr_onnxruntime.utils import infer_engine

            # ONNX Runtime's threads spin while they wait for work: on a busy machine that made OCR
            # 2.5x slower (threads.py). RapidOCR builds its own session options, so turn spinning
            # off in them while it creates its sessions.
            make_options = infer_engine.OrtInferSession._init_sess_opts

            def quiet_options(config):
                options = make_options(config)
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                return options

            infer_engine.OrtInferSession._init_sess_opts = staticmethod(quiet_options)
            try:
                _engine = RapidOCR(
                    det_limit_side_len=960,
                    det_limit_type="max",
                    intra_op_num_threads=cpu_threads(),
                    inter_op_num_threads=1,
                    # One line at a time: a batch is padded to its widest line, which made a
                    # five-line invoice take 0.9 s instead of 0.42 s.
                    rec_batch_num=1,
                )
            finally:
                infer_engine.OrtInferSession._init_sess_opts = staticmethod(make_options)
    return _engine


def read(pil: PILImage.Image) -> list[dict]:
    """Lines of text in reading order: [{"text", "score", "box": [x0, y0, x1, y1]}] in the
    image's pixel coordinates; lines scoring under MIN_SCORE are dropped."""
    import cv2

    engine = load()
    rgb = np.asarray(pil if pil.mode == "RGB" else pil.convert("RGB"))
    h, w = rgb.shape[:2]
    # Recognition reads crops of the full image (tiny images scaled up); detection looks at a copy
    # of at most DET_MAX_SIDE pixels: on a 12 MP photo it took 8 s at 2000 pixels, 1.1 s at 1280.
    up = MIN_SIDE / min(h, w) if min(h, w) < MIN_SIDE else 1.0
    up = min(up, max(1.0, UPSCALED_MAX_SIDE / max(h, w)))  # a 65,000 x 1 strip is not made 1,950,000 wide
    img = np.ascontiguousarray(rgb[:, :, ::-1])  # RapidOCR works in BGR
    if up != 1.0:
        img = cv2.resize(img, (max(1, round(w * up)), max(1, round(h * up))), interpolation=cv2.INTER_CUBIC)
    ih, iw = img.shape[:2]
    down = min(1.0, DET_MAX_SIDE / max(ih, iw))
    det = img if down == 1.0 else cv2.resize(img, (max(1, round(iw * down)), max(1, round(ih * down))),
                                             interpolation=cv2.INTER_AREA)  # fmt: skip (never 0 pixels: a 20,000 x 3 strip)
    # Very flat strips (one line of text, w/h > 8) are padded top and bottom, as RapidOCR does.
    pad = 0
    dh, dw = det.shape[:2]
    if dh <= 30 or dw / dh > 8:
        pad = max(int(dw / 8), 30) // 2 + 1
        edge = np.median(np.concatenate([det[0], det[-1]]), axis=0)
        det = cv2.copyMakeBorder(det, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=[float(v) for v in edge])

    with _run_lock:
        found, _ = engine.text_det(det)
        if found is None or len(found) == 0:
            return []
        boxes = []
        for box in engine.sorted_boxes(found):
            b = np.asarray(box, dtype=np.float32).copy()
            b[:, 1] -= pad
            boxes.append(b / down)  # in the coordinates of img
        crops = [_crop(engine, img, box) for box in boxes]
        results = list(engine.text_rec(crops)[0])
        # Upside-down text: read the doubtful lines again turned by 180 degrees and keep the better
        # reading. (RapidOCR's angle classifier is not used: it turned a correct line on our crops.)
        doubtful = [i for i, (_, score) in enumerate(results) if float(score) < RETRY_SCORE]
        if doubtful:
            again = engine.text_rec([np.ascontiguousarray(crops[i][::-1, ::-1]) for i in doubtful])[0]
            for i, reading in zip(doubtful, again):
                if float(reading[1]) > float(results[i][1]):
                    results[i] = reading
                    boxes[i] = boxes[i][[2, 3, 0, 1]]  # its first corner is now its top left

    lines = []
    for box, (text, score) in zip(boxes, results):
        text = " ".join(str(text).split())
        if float(score) < MIN_SCORE or not _plausible(text, float(score)):
            continue
        b = box / up  # in the coordinates of the image we were given
        x0, y0 = np.clip(b.min(0), 0, None)
        x1, y1 = b.max(0)
        lines.append(
            {
                "text": text,
                "score": round(float(score), 3),
                "box": [int(x0), int(y0), int(math.ceil(min(x1, w))), int(math.ceil(min(y1, h)))],
                "_quad": b.tolist(),  # for the reading order; not returned
            }
        )
    return reading_order(lines)


def _plausible(text: str, score: float) -> bool:
    """Drop what is most likely texture read as text: a coffee cup seen from above reads as "O"
    (score 0.51), a rocket's exhaust as two Chinese characters (0.80). Very short readings must be
    confident."""
    alnum = sum(ch.isalnum() for ch in text)
    if alnum == 0:
        return False
    return len(text.replace(" ", "")) > 2 or score >= 0.9


def _crop(engine, img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """An upright crop of one text line with a margin, at least CROP_MIN_HEIGHT pixels high.
    Slightly tilted lines (photographed signs) are turned upright first; steep or vertical text
    gets RapidOCR's perspective crop."""
    import cv2

    box = np.asarray(box, dtype=np.float32)
    top = box[1] - box[0]
    tilt = math.degrees(math.atan2(float(top[1]), float(top[0]))) if top[0] > 0 else 90.0
    (x0, y0), (x1, y1) = box.min(0), box.max(0)
    if abs(tilt) > MAX_DESKEW_DEGREES or (y1 - y0) >= 1.5 * (x1 - x0):
        return engine.get_crop_img_list(img, [box])[0]
    H, W = img.shape[:2]
    if abs(tilt) > MAX_TILT_DEGREES:  # turn the neighbourhood of the line upright
        pad = int(0.5 * (y1 - y0)) + 2
        ox, oy = max(0, int(x0) - pad), max(0, int(y0) - pad)
        region = img[oy : min(H, math.ceil(y1) + pad), ox : min(W, math.ceil(x1) + pad)]
        centre = (float(box[:, 0].mean() - ox), float(box[:, 1].mean() - oy))
        turn = cv2.getRotationMatrix2D(centre, tilt, 1.0)
        img = cv2.warpAffine(region, turn, (region.shape[1], region.shape[0]), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        box = cv2.transform((box - (ox, oy))[None], turn)[0]
        (x0, y0), (x1, y1) = box.min(0), box.max(0)
        H, W = img.shape[:2]
    m = CROP_MARGIN * (y1 - y0)
    crop = img[max(0, int(y0 - m)) : min(H, math.ceil(y1 + m)), max(0, int(x0 - m)) : min(W, math.ceil(x1 + m))]
    if crop.shape[0] < CROP_MIN_HEIGHT:
        f = CROP_MIN_HEIGHT / max(1, crop.shape[0])
        crop = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(crop)


def reading_order(lines: list[dict]) -> list[dict]:
    """Top to bottom, then left to right. Lines whose centres lie within half a line height of
    each other (measured across the text, after undoing the page's median tilt) form one row."""
    if not lines:
        return lines
    quads = [np.asarray(ln.pop("_quad", _quad(ln["box"])), dtype=np.float64) for ln in lines]
    angles = [math.atan2(q[1, 1] - q[0, 1], q[1, 0] - q[0, 0]) for q in quads]
    tilt = math.atan2(sum(map(math.sin, angles)), sum(map(math.cos, angles)))  # 180 degrees: upside down
    cos, sin = math.cos(-tilt), math.sin(-tilt)
    keyed = []
    for ln, q in zip(lines, quads):
        cx, cy = q[:, 0].mean(), q[:, 1].mean()
        x, y = cx * cos - cy * sin, cx * sin + cy * cos
        height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
        keyed.append((y, x, height, ln))
    heights = sorted(k[2] for k in keyed)
    tolerance = max(4.0, heights[len(heights) // 2] / 2)
    rows: list[list[tuple]] = []
    for item in sorted(keyed, key=lambda k: k[0]):
        if rows and abs(item[0] - sum(r[0] for r in rows[-1]) / len(rows[-1])) <= tolerance:
            rows[-1].append(item)
        else:
            rows.append([item])
    ordered = []
    for i, row in enumerate(rows):
        for _, _, _, ln in sorted(row, key=lambda k: k[1]):
            ln["row"] = i
            ordered.append(ln)
    return ordered


def _quad(box: list[int]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def rows_text(lines: list[dict]) -> list[str]:
    """One string per row of text (boxes on the same row joined by a space)."""
    out: dict[int, list[str]] = {}
    for ln in lines:
        out.setdefault(ln.get("row", len(out)), []).append(ln["text"])
    return [" ".join(parts) for _, parts in sorted(out.items())]
