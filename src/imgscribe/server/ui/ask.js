// Ask: images + a prompt to one or more models; answers stream side by side, one column per model,
// each keeping its own conversation for follow-up questions.

import { ApiError, NeedsKey, stream } from "./api.js";
import { base64, dropZone, imageFiles, preview } from "./images.js";
import { answerStats } from "./stats.js";

const PRESETS = {
  describe: "Describe this image.",
  detailed: "Describe this image in detail: the subject, the setting, the colours, any text, and anything unusual.",
  alt: "Write alt text for this image: one sentence of at most 125 characters, without starting with 'image of'.",
  ocr: "Read all the text in this image, exactly as written.",
  tags: 'List tags for this image as JSON: {"tags": ["...", "..."]}',
};

const $ = (id) => document.getElementById(id);

export function setupAsk({ onNeedsKey }) {
  const form = $("ask-form");
  const prompt = $("ask-prompt");
  const preset = $("ask-preset");
  const json = $("ask-json");
  const send = $("ask-send");
  const stop = $("ask-stop");
  const error = $("ask-error");
  const answers = $("answers");
  const fieldset = $("ask-models");
  let files = [];
  let models = [];
  const columns = new Map(); // model name -> { el, turns, history }
  const running = new Set(); // AbortControllers of the answers in flight

  const add = (list) => {
    for (const file of imageFiles(list)) {
      files.push(file);
      $("ask-previews").append(preview(file, (f) => {
        files = files.filter((x) => x !== f);
        markModels();
      }));
    }
    markModels();
  };
  $("ask-files").addEventListener("change", (e) => {
    add(e.target.files);
    e.target.value = "";
  });
  dropZone($("ask-drop"), add, { paste: true });

  preset.addEventListener("change", () => {
    if (!preset.value) return;
    prompt.value = PRESETS[preset.value];
    json.checked = preset.value === "tags";
    prompt.focus();
  });
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => running.forEach((c) => c.abort()));
  $("ask-new").addEventListener("click", () => {
    running.forEach((c) => c.abort());
    columns.clear();
    answers.replaceChildren();
  });

  /** Models that cannot see images are marked, and disabled while images are attached. */
  function markModels() {
    for (const box of fieldset.querySelectorAll("input[type=checkbox]")) {
      const blind = box.dataset.vision !== "true";
      box.disabled = blind && files.length > 0;
      if (box.disabled) box.checked = false;
    }
  }

  function setModels(list) {
    models = list;
    const checked = new Set([...fieldset.querySelectorAll("input:checked")].map((b) => b.value));
    fieldset.querySelectorAll(".model").forEach((n) => n.remove());
    $("ask-models-empty").hidden = list.length > 0;
    if (!list.length) $("ask-models-empty").textContent = "No models on this server (pull one in the Models tab).";
    const fallback = list.find((m) => m.name.startsWith("builtin"))?.name || list[0]?.name;
    list.forEach((m, i) => {
      const label = document.createElement("label");
      label.className = "model";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "model";
      box.value = m.name;
      box.id = `ask-model-${i}`;
      box.dataset.vision = String(m.capabilities.includes("vision"));
      box.checked = checked.size ? checked.has(m.name) : m.name === fallback;
      const name = document.createElement("span");
      name.textContent = m.name;
      const note = document.createElement("span");
      note.className = "muted";
      const vision = m.capabilities.includes("vision");
      note.textContent = vision ? (m.isVlm === false ? " (sees images; not a VLM)" : " (vision)") : " (text only: no images)";
      label.append(box, name, note);
      fieldset.append(label);
    });
    markModels();
  }

  function column(name) {
    if (columns.has(name)) return columns.get(name);
    const el = document.createElement("article");
    el.className = "column";
    el.dataset.model = name;
    const h = document.createElement("h2");
    h.textContent = name;
    h.id = `col-${columns.size}-${name.replace(/[^a-z0-9]+/gi, "-")}`;
    el.setAttribute("aria-labelledby", h.id);
    const turns = document.createElement("ol");
    turns.className = "turns";
    el.append(h, turns);
    answers.append(el);
    const col = { el, turns, history: [] };
    columns.set(name, col);
    return col;
  }

  function options() {
    const out = {};
    const num = (id) => ($(id).value === "" ? undefined : Number($(id).value));
    const t = num("opt-temperature");
    const b = num("opt-image");
    const p = num("opt-predict");
    if (t !== undefined) out.temperature = t;
    if (b !== undefined) out.image_max_tokens = b;
    if (p !== undefined) out.num_predict = p;
    return out;
  }

  async function ask(col, name, message, body) {
    const li = document.createElement("li");
    li.className = "turn";
    const q = document.createElement("p");
    q.className = "question";
    q.textContent = message.content + (message.images?.length ? `  [${message.images.length} image(s)]` : "");
    const a = document.createElement("div");
    a.className = "answer";
    a.setAttribute("aria-live", "polite");
    a.setAttribute("aria-busy", "true");
    a.textContent = "…";
    const stats = document.createElement("dl");
    stats.className = "stats";
    li.append(q, a, stats);
    col.turns.append(li);

    col.history.push(message);
    const controller = new AbortController();
    running.add(controller);
    const started = performance.now();
    let firstToken = null;
    let text = "";
    let final = null;
    try {
      await stream("api/chat", { ...body, model: name, messages: col.history, stream: true }, (obj) => {
        const piece = obj.message?.content || "";
        if (piece && firstToken === null) firstToken = performance.now();
        if (piece) {
          text += piece;
          a.textContent = text;
        }
        if (obj.done) final = obj;
      }, controller.signal);
      if (!text) a.textContent = "(empty answer)";
      col.history.push({ role: "assistant", content: text });
      li.classList.add("done");
      answerStats(stats, { started, firstToken, final, ended: performance.now(), sentImages: message.images?.length || 0 });
    } catch (err) {
      if (err.name === "AbortError") {
        li.classList.add("stopped");
        col.history.push({ role: "assistant", content: text });
        const note = document.createElement("p");
        note.className = "note";
        note.textContent = "Stopped.";
        li.insertBefore(note, stats);
        if (!text) a.textContent = "";
      } else {
        col.history.pop(); // the failed question is not part of the conversation
        li.classList.add("failed");
        a.classList.add("error");
        a.setAttribute("role", "alert");
        a.textContent = err instanceof ApiError ? `Error: ${err.message}` : `Error: ${err}`;
        if (err instanceof NeedsKey) onNeedsKey();
      }
    } finally {
      a.setAttribute("aria-busy", "false");
      running.delete(controller);
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const chosen = [...fieldset.querySelectorAll("input:checked")].map((b) => b.value);
    const text = prompt.value.trim();
    if (!chosen.length) {
      error.textContent = "Choose at least one model.";
      return;
    }
    if (!text && !files.length) {
      error.textContent = "Write a prompt or attach an image.";
      prompt.focus();
      return;
    }
    send.disabled = true;
    stop.disabled = false;
    let images = [];
    try {
      images = await Promise.all(files.map(base64));
    } catch {
      error.textContent = "An attached file could not be read by the browser.";
      send.disabled = false;
      stop.disabled = true;
      return;
    }
    const message = { role: "user", content: text };
    if (images.length) message.images = images;
    const body = { options: options() };
    if (json.checked) body.format = "json";
    // The answer columns follow the chosen models; a column keeps its conversation.
    for (const [name, col] of columns) {
      if (!chosen.includes(name)) {
        col.el.remove();
        columns.delete(name);
      }
    }
    files = [];
    $("ask-previews").replaceChildren();
    markModels();
    await Promise.allSettled(chosen.map((name) => ask(column(name), name, { ...message }, body)));
    send.disabled = false;
    stop.disabled = true;
  });

  return { setModels, models: () => models };
}
