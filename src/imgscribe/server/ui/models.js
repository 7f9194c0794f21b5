// Models: the server's list (size, parameters, capabilities), pull by name with progress, delete.

import { ApiError, NeedsKey, bytes, call, stream } from "./api.js";

const $ = (id) => document.getElementById(id);

/** What loading a model needs, and whether it fits the server's free RAM (imgscribe's estimate). */
function fit(memory) {
  if (!memory) return "–";
  const needs = `needs about ${bytes(memory.needs)}`;
  if (memory.fits === null || memory.fits === undefined) return needs;
  return memory.fits ? `${needs}: fits (${bytes(memory.available)} free)` : `${needs}: does not fit (${bytes(memory.available)} free)`;
}

export function setupModels({ refresh, onNeedsKey }) {
  const tbody = $("models-table").querySelector("tbody");
  const bar = $("pull-progress");
  const status = $("pull-status");
  const error = $("pull-error");
  let controller = null;

  const fail = (where, err) => {
    where.textContent = `Error: ${err instanceof ApiError ? err.message : err}`;
    if (err instanceof NeedsKey) onNeedsKey();
  };

  function render(list) {
    tbody.replaceChildren();
    for (const m of list) {
      const tr = document.createElement("tr");
      tr.dataset.model = m.name;
      const caps = m.capabilities.join(", ") + (m.isVlm === false ? " (not a VLM)" : "");
      for (const text of [m.name, bytes(m.size), m.parameters || "–", caps, fit(m.memory)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const td = document.createElement("td");
      const del = document.createElement("button");
      del.type = "button";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${m.name}`);
      del.addEventListener("click", async () => {
        if (!window.confirm(`Delete ${m.name} from this server? Its files are removed.`)) return;
        $("models-status").textContent = `Deleting ${m.name}...`;
        try {
          await call("api/delete", { method: "DELETE", body: { model: m.name } });
          $("models-status").textContent = `Deleted ${m.name}.`;
          await refresh();
        } catch (err) {
          fail($("models-status"), err);
        }
      });
      td.append(del);
      tr.append(td);
      tbody.append(tr);
    }
  }

  $("pull-stop").addEventListener("click", () => controller?.abort());
  $("pull-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("pull-name").value.trim();
    if (!name) return;
    error.textContent = "";
    status.textContent = `Pulling ${name}...`;
    bar.max = 1;
    bar.value = 0;
    controller = new AbortController();
    $("pull-start").disabled = true;
    $("pull-stop").disabled = false;
    try {
      await stream("api/pull", { model: name, stream: true, insecure: $("pull-insecure").checked }, (obj) => {
        if (obj.total) {
          bar.max = obj.total;
          bar.value = obj.completed || 0;
          status.textContent = `${obj.status}: ${bytes(obj.completed || 0)} of ${bytes(obj.total)}`;
        } else if (obj.status) {
          status.textContent = obj.status;
        }
      }, controller.signal);
      bar.value = bar.max;
      status.textContent = `Pulled ${name}.`;
      await refresh();
    } catch (err) {
      if (err.name === "AbortError") status.textContent = "Pull stopped (it resumes where it left off next time).";
      else {
        status.textContent = "";
        fail(error, err);
      }
    } finally {
      controller = null;
      $("pull-start").disabled = false;
      $("pull-stop").disabled = true;
    }
  });

  return { render };
}
