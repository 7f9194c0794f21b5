// Batch: dropped images described one at a time by one model (one request in flight, so the
// server stays free for other clients), with progress and an ETA; JSONL and CSV built here.

import { ApiError, NeedsKey, call, seconds } from "./api.js";
import { base64, dropZone, imageFiles } from "./images.js";

const $ = (id) => document.getElementById(id);

function csvCell(value) {
  const s = value === undefined || value === null ? "" : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function toCsv(records) {
  const cols = ["file", "model", "response", "error", "done_reason", "prompt_eval_count", "eval_count",
    "total_duration", "image_tokens", "image_size"];
  const lines = [cols.join(",")];
  for (const r of records) {
    const image = r.images?.[0];
    const row = { ...r, image_tokens: image?.tokens, image_size: image?.size ? image.size.join("x") : "" };
    lines.push(cols.map((c) => csvCell(row[c])).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

export function toJsonl(records) {
  return records.map((r) => JSON.stringify(r)).join("\n") + (records.length ? "\n" : "");
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function setupBatch({ onNeedsKey }) {
  const form = $("batch-form");
  const bar = $("batch-progress");
  const status = $("batch-status");
  const error = $("batch-error");
  const tbody = $("batch-table").querySelector("tbody");
  let files = [];
  let records = [];
  let controller = null;

  const add = (list) => {
    files.push(...imageFiles(list));
    $("batch-count").textContent = `${files.length} image(s) ready.`;
  };
  $("batch-files").addEventListener("change", (e) => {
    files = [];
    add(e.target.files);
  });
  dropZone($("batch-drop"), add);
  $("batch-stop").addEventListener("click", () => controller?.abort());
  $("batch-jsonl").addEventListener("click", () => download("imgscribe-batch.jsonl", toJsonl(records), "application/x-ndjson"));
  $("batch-csv").addEventListener("click", () => download("imgscribe-batch.csv", toCsv(records), "text/csv"));

  function setModels(list) {
    const select = $("batch-model");
    const was = select.value;
    select.replaceChildren();
    for (const m of list.filter((x) => x.capabilities.includes("vision"))) {
      const o = document.createElement("option");
      o.value = m.name;
      o.textContent = m.name;
      select.append(o);
    }
    if ([...select.options].some((o) => o.value === was)) select.value = was;
  }

  function row(record, took) {
    const tr = document.createElement("tr");
    const cells = [record.file, record.error ? `Error: ${record.error}` : record.response, seconds(took)];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    if (record.error) tr.className = "error";
    tbody.append(tr);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const model = $("batch-model").value;
    if (!model) return void (error.textContent = "No vision model on this server to describe images with.");
    if (!files.length) return void (error.textContent = "Drop or pick some images first.");
    const todo = [...files];
    const prompt = $("batch-prompt").value.trim() || "Describe this image.";
    records = [];
    tbody.replaceChildren();
    controller = new AbortController();
    $("batch-start").disabled = true;
    $("batch-stop").disabled = false;
    $("batch-jsonl").disabled = $("batch-csv").disabled = true;
    bar.max = todo.length;
    bar.value = 0;
    const began = performance.now();
    let stopped = false;
    for (const [i, file] of todo.entries()) {
      status.textContent = `${i} of ${todo.length} done` + (i ? `, about ${seconds(((performance.now() - began) / 1000 / i) * (todo.length - i))} left` : "");
      const t0 = performance.now();
      const record = { file: file.name, model };
      try {
        const images = [await base64(file)];
        const answer = await call("api/chat", {
          method: "POST",
          body: { model, messages: [{ role: "user", content: prompt, images }], stream: false },
          signal: controller.signal,
        });
        Object.assign(record, {
          response: answer.message?.content || "",
          done_reason: answer.done_reason,
          prompt_eval_count: answer.prompt_eval_count,
          eval_count: answer.eval_count,
          total_duration: answer.total_duration,
          images: answer.images,
        });
      } catch (err) {
        if (err.name === "AbortError") {
          stopped = true;
          break;
        }
        record.error = err instanceof ApiError ? err.message : String(err);
        if (err instanceof NeedsKey) {
          onNeedsKey();
          stopped = true;
          break;
        }
      }
      records.push(record);
      row(record, (performance.now() - t0) / 1000);
      bar.value = i + 1;
    }
    const failed = records.filter((r) => r.error).length;
    status.textContent = `${records.length} of ${todo.length} done in ${seconds((performance.now() - began) / 1000)}` +
      (failed ? `, ${failed} failed` : "") + (stopped ? " (stopped)" : "") + ".";
    $("batch-start").disabled = false;
    $("batch-stop").disabled = true;
    $("batch-jsonl").disabled = $("batch-csv").disabled = records.length === 0;
    controller = null;
  });

  return { setModels };
}
