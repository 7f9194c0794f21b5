// The user's images: read as base64 for the API, previewed in the page (the browser applies EXIF
// orientation); a format the browser cannot show (HEIC) is previewed by the server's own decoding
// (POST ui/preview), or a placeholder saying why not.

import { serverPreview } from "./api.js";

const HEIC = /\.(heic|heif)$/i;

export function isHeic(file) {
  return /image\/hei[cf]/i.test(file.type) || HEIC.test(file.name);
}

/** A file's bytes as plain base64 (what Ollama's ``images`` holds). */
export async function base64(file) {
  const data = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  const step = 0x8000;
  for (let i = 0; i < data.length; i += step) binary += String.fromCharCode(...data.subarray(i, i + step));
  return btoa(binary);
}

/** Image-like files among a drop's or a paste's items (a folder's other files are left out). */
export function imageFiles(list) {
  return [...(list || [])].filter(
    (f) => f && (f.type.startsWith("image/") || /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|avif)$/i.test(f.name)),
  );
}

/** A preview list item: the picture, or a placeholder naming the file; a button removes it. */
export function preview(file, onRemove) {
  const li = document.createElement("li");
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = file.name || "pasted image";
  const placeholder = (why) => {
    const box = document.createElement("div");
    box.className = "placeholder";
    box.textContent = why;
    return box;
  };
  if (isHeic(file)) {
    const waiting = placeholder("HEIC: decoding on the server...");
    figure.append(waiting);
    serverPreview(file).then(
      (url) => {
        const img = document.createElement("img");
        img.src = url;
        img.alt = `preview of ${file.name || "image"} (decoded by the server)`;
        li.dataset.url = url;
        waiting.replaceWith(img);
      },
      (err) => { waiting.textContent = `no preview: ${err.message}`; },
    );
  } else {
    const img = document.createElement("img");
    const url = URL.createObjectURL(file);
    img.src = url;
    img.alt = `preview of ${file.name || "pasted image"}`;
    img.addEventListener("error", () => img.replaceWith(placeholder("no preview (the server will say if it can read it)")));
    li.dataset.url = url;
    figure.append(img);
  }
  figure.append(caption);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${file.name || "pasted image"}`);
  remove.addEventListener("click", () => {
    if (li.dataset.url) URL.revokeObjectURL(li.dataset.url);
    li.remove();
    onRemove(file);
  });
  li.append(figure, remove);
  return li;
}

/** Drop and paste onto ``zone`` (paste anywhere in the document when ``paste``), calling ``add(files)``. */
export function dropZone(zone, add, { paste = false } = {}) {
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    add(imageFiles(e.dataTransfer?.files));
  });
  if (paste) {
    document.addEventListener("paste", (e) => {
      const files = imageFiles(e.clipboardData?.files);
      if (files.length && !zone.closest("[hidden]")) {
        e.preventDefault();
        add(files);
      }
    });
  }
}
