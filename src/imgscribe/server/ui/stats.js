// An answer's timings from Ollama's final object: time to first token (measured here), tokens per
// second (eval_count / eval_duration), the image tokens and the size each image was processed at.

import { seconds } from "./api.js";

function size(pair) {
  return Array.isArray(pair) ? `${pair[0]}×${pair[1]}` : "";
}

export function answerStats(dl, { started, firstToken, final, ended, sentImages = 0 }) {
  const rows = [];
  rows.push(["time to first token", firstToken === null ? "–" : seconds((firstToken - started) / 1000), "ttft"]);
  if (final?.eval_count && final?.eval_duration) {
    rows.push(["tokens per second", (final.eval_count / (final.eval_duration / 1e9)).toFixed(1), "tps"]);
  } else {
    rows.push(["tokens per second", "–", "tps"]);
  }
  if (final?.eval_count !== undefined) rows.push(["tokens", String(final.eval_count), "tokens"]);
  const images = final?.images || [];
  if (images.length) {
    const tokens = images.reduce((n, i) => n + (i.tokens || 0), 0);
    rows.push(["image tokens", String(tokens), "image-tokens"]);
    const sizes = images.map((i) => {
      const was = size(i.original_size);
      const now = size(i.size);
      return was && was !== now ? `${was} → ${now}` : now;
    });
    rows.push(["image size", sizes.join(", "), "image-size"]);
  } else if (sentImages) {
    rows.push(["image tokens", "not reported by this model", "image-tokens"]);
  }
  if (final?.prompt_eval_count !== undefined) rows.push(["prompt tokens", String(final.prompt_eval_count), "prompt-tokens"]);
  const total = final?.total_duration ? final.total_duration / 1e9 : (ended - started) / 1000;
  rows.push(["total", seconds(total), "total"]);
  if (final?.done_reason && final.done_reason !== "stop") rows.push(["ended by", final.done_reason, "reason"]);
  dl.replaceChildren();
  for (const [name, value, key] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.dataset.stat = key;
    dl.append(dt, dd);
  }
}
