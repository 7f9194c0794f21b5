// The server's public API, from the page's own origin: JSON calls, NDJSON streams, errors in words.

const KEY = "imgscribe.key";

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

/** Raised when the server wants its API key; app.js asks for it and retries. */
export class NeedsKey extends ApiError {}

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

function headers(json) {
  const h = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** What a failed answer says, in words: the server's own sentence, or what the status means. */
async function failure(response) {
  let message = "";
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      message = typeof body.error === "string" ? body.error : body.error?.message || "";
    } catch {
      message = text.trim().slice(0, 300);
    }
  } catch {
    /* the body could not be read */
  }
  const s = response.status;
  if (s === 401) return new NeedsKey(message || "this server needs its API key", s);
  if (!message) {
    message =
      s === 503 ? "the server is busy, try again in a moment"
      : s === 404 ? "not found"
      : s === 403 ? "forbidden"
      : `the server answered ${s}`;
  }
  if (s === 503 && !/busy|queue|full/i.test(message)) message = `the server is busy: ${message}`;
  return new ApiError(message, s);
}

function networkError(err) {
  if (err.name === "AbortError") return err;
  return new ApiError("cannot reach the server (is `imgscribe serve` still running?)");
}

/** One JSON call; the parsed answer (or null for an empty body). */
/** The server's JPEG thumbnail of an image the browser cannot show (HEIC), as an object URL. */
export async function serverPreview(file) {
  let response;
  try {
    response = await fetch("ui/preview", { method: "POST", headers: headers(false), body: file });
  } catch (err) {
    throw networkError(err);
  }
  if (!response.ok) throw await failure(response);
  return URL.createObjectURL(await response.blob());
}

export async function call(path, { method = "GET", body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    throw networkError(err);
  }
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * A streamed call (Ollama's NDJSON): ``onObject`` gets each object; an object that carries an
 * ``error`` ends the stream with that error. Aborting ``signal`` cancels the request on the server.
 */
export async function stream(path, body, onObject, signal) {
  let response;
  try {
    response = await fetch(path, { method: "POST", headers: headers(true), body: JSON.stringify(body), signal });
  } catch (err) {
    throw networkError(err);
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  const handle = (line) => {
    if (!line.trim()) return;
    let obj;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new ApiError("the server sent a line that is not JSON");
    }
    if (obj.error) throw new ApiError(typeof obj.error === "string" ? obj.error : obj.error.message || "error", response.status);
    onObject(obj);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop();
      lines.forEach(handle);
    }
    handle(pending + decoder.decode());
  } catch (err) {
    reader.cancel().catch(() => {});
    if (err.name === "AbortError" || err instanceof ApiError) throw err;
    throw new ApiError("the connection to the server broke off");
  }
}

/** The models, each with its capabilities (from /api/tags). */
export async function models() {
  const answer = await call("api/tags");
  return (answer.models || []).map((m) => ({
    name: m.name,
    size: m.size || 0,
    parameters: m.details?.parameter_size || "",
    family: m.details?.family || "",
    capabilities: m.capabilities || m.imgscribe?.capabilities || [],
    isVlm: m.imgscribe?.is_vlm,
    summary: m.imgscribe?.summary || "",
    memory: m.imgscribe?.memory || null,
  }));
}

export function bytes(n) {
  if (!n) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(n >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function seconds(s) {
  if (!Number.isFinite(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
