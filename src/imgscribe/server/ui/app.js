// The page: tabs, the API key (asked once when the server wants one), the model list for every tab.

import { ApiError, NeedsKey, models, setApiKey } from "./api.js";
import { setupAsk } from "./ask.js";
import { setupBatch } from "./batch.js";
import { setupModels } from "./models.js";

const $ = (id) => document.getElementById(id);

function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) select(tabs[(i + step + tabs.length) % tabs.length], true);
      if (e.key === "Home") select(tabs[0], true);
      if (e.key === "End") select(tabs[tabs.length - 1], true);
    });
  });
}

let asking = false;
function askForKey() {
  if (asking) return;
  asking = true;
  setApiKey("");
  const form = $("key-form");
  form.hidden = false;
  $("key-input").focus();
}

const ctx = { onNeedsKey: askForKey, refresh };
const ask = setupAsk(ctx);
const batch = setupBatch(ctx);
const modelsTab = setupModels(ctx);

async function refresh() {
  const status = $("server-status");
  try {
    const list = await models();
    ask.setModels(list);
    batch.setModels(list);
    modelsTab.render(list);
    status.textContent = `${list.length} model(s) on this server`;
    return true;
  } catch (err) {
    if (err instanceof NeedsKey) {
      askForKey();
      status.textContent = "Waiting for the API key.";
      return false;
    }
    status.textContent = `Error: ${err instanceof ApiError ? err.message : err}`;
    return false;
  }
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  setApiKey($("key-input").value.trim());
  asking = false;
  $("key-error").textContent = "";
  if (await refresh()) {
    $("key-form").hidden = true;
    $("key-input").value = "";
    $("ask-prompt").focus();
  } else {
    $("key-form").hidden = false;
    asking = true;
    $("key-error").textContent = "That key was not accepted.";
  }
});

setupTabs();
refresh();
