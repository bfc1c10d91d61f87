// The console's scripts: upload with a progress bar, and the playground's streamed output.
// Every page works without them: the forms post normally.
"use strict";

function csrfToken(form) {
  return form.querySelector('input[name="csrf"]').value;
}

function showFieldError(field, message) {
  const element = document.getElementById(field + "-error");
  if (element) { element.textContent = message; element.hidden = false; }
}

function setupUpload(form) {
  const progress = document.getElementById("upload-progress");
  const percent = document.getElementById("upload-percent");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    for (const element of form.querySelectorAll(".field-error")) { element.hidden = true; }
    const data = new FormData(form);
    // A folder's files carry their path inside the folder, which the server keeps.
    data.delete("adapter");
    for (const input of form.querySelectorAll('input[name="adapter"]')) {
      for (const file of input.files) { data.append("adapter", file, file.webkitRelativePath || file.name); }
    }
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRF-Token", csrfToken(form));
    progress.hidden = false;
    progress.value = 0;
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) {
        progress.value = Math.round(100 * e.loaded / e.total);
        percent.textContent = progress.value + "% uploaded";
      }
    });
    request.upload.addEventListener("load", () => { percent.textContent = "Uploaded; checking the adapter…"; });
    request.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (e) { body = {}; }
      if (request.status === 200 && body.location) { window.location.assign(body.location); return; }
      percent.textContent = "";
      progress.hidden = true;
      const errors = body.errors || {adapter: body.error || "The upload failed (" + request.status + ")."};
      for (const [field, message] of Object.entries(errors)) { showFieldError(field, message); }
    });
    request.addEventListener("error", () => { showFieldError("adapter", "The upload was interrupted: check the connection and try again."); });
    request.send(data);
  });
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) { break; }
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ") && line !== "data: [DONE]") { onEvent(JSON.parse(line.slice(6))); }
      }
    }
  }
}

function setupPlayground(form) {
  const output = document.getElementById("output");
  const stats = document.getElementById("run-stats");
  const error = document.getElementById("playground-error");
  const button = form.querySelector("button[type=submit]");
  const turnsList = document.getElementById("turns");
  let turns = [];  // the chat's earlier turns, sent with each new message
  const mode = () => form.querySelector('input[name="mode"]:checked').value;
  const showMode = () => {
    document.getElementById("prompt-mode").hidden = mode() !== "prompt";
    document.getElementById("chat-mode").hidden = mode() !== "chat";
  };
  const addTurn = (role, content) => {
    turns.push({role: role, content: content});
    const item = document.createElement("li");
    item.className = "turn turn-" + role;
    item.textContent = content;
    turnsList.appendChild(item);
  };
  for (const radio of form.querySelectorAll('input[name="mode"]')) { radio.addEventListener("change", showMode); }
  showMode();
  document.getElementById("clear-chat").addEventListener("click", () => { turns = []; turnsList.textContent = ""; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    output.textContent = "";
    stats.hidden = true;
    error.hidden = true;
    button.disabled = true;
    const body = Object.fromEntries(new FormData(form));
    delete body.csrf;
    const chat = body.mode === "chat";
    if (chat) { body.turns = turns; }
    try {
      const response = await fetch(form.dataset.stream, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "text/event-stream, application/json",
                  "X-CSRF-Token": csrfToken(form)},
        body: JSON.stringify(body)});
      if (!response.ok) {
        const failure = await response.json().catch(() => ({}));
        throw new Error(failure.error || "The function could not be invoked (" + response.status + ").");
      }
      const activation = response.headers.get("x-openwhisk-activation-id");
      let failed = null;
      await readEvents(response, (payload) => {
        if (payload.error) { failed = payload.error.message || "The function failed."; return; }
        for (const choice of payload.choices || []) {
          output.textContent += (chat ? (choice.delta || {}).content : choice.text) || "";
        }
      });
      if (failed) { throw new Error(failed); }
      const summary = await showStats(activation);
      if (typeof summary.text === "string") { output.textContent = summary.text; }
      if (chat) {
        addTurn("user", body.message);
        addTurn("assistant", output.textContent);
        form.querySelector("#message").value = "";
      }
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
      // The run is in the records now: its latency, its activation and the charts.
      refreshParts(["latency", "recent-activations", "timeline-table", "function-chart-data"])
        .catch(() => { /* the numbers stay as they were until the next load */ });
    }
  });
}

// Fetch this page again and swap the named parts in (no full reload), then say so: the
// charts (charts.js) redraw from the fresh numbers.
async function refreshParts(ids) {
  const response = await fetch(window.location.href, {credentials: "same-origin"});
  if (!response.ok) { return; }
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ids) {
    const current = document.getElementById(id);
    const replacement = fresh.getElementById(id);
    if (current && replacement) { current.replaceWith(replacement); }
  }
  document.dispatchEvent(new Event("lorafaas:refreshed"));
}

async function showStats(activation) {
  const response = await fetch("/console/activations/" + activation + "/summary.json",
                               {credentials: "same-origin", headers: {"Accept": "application/json"}});
  const s = await response.json();
  document.getElementById("stat-prompt-tokens").textContent = s.prompt_tokens;
  document.getElementById("stat-completion-tokens").textContent = s.completion_tokens;
  document.getElementById("stat-ttft").textContent = s.ttft_ms === null ? "—" : s.ttft_ms.toFixed(1) + " ms";
  document.getElementById("stat-start-kind").textContent = s.start_kind || "—";
  document.getElementById("stat-cost").textContent = s.cost === null ? "not metered" : "$" + s.cost.toFixed(6);
  const link = document.getElementById("stat-activation");
  link.href = s.url;
  link.textContent = activation;
  document.getElementById("run-stats").hidden = false;
  return s;
}

function setupCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (e) {
        button.textContent = "Select and copy";  // no clipboard (an insecure origin)
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

// A live page: its content fetched again every few seconds and swapped in (no full reload).
function setupLiveRefresh(live) {
  const every = Number(live.dataset.refreshMs);
  setInterval(async () => {
    try {
      const response = await fetch(window.location.href, {credentials: "same-origin"});
      if (!response.ok) { return; }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
        .getElementById(live.id);
      if (fresh) { live.innerHTML = fresh.innerHTML; }
    } catch (e) { /* offline for a moment: the next tick tries again */ }
  }, every);
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopyButtons();
  const live = document.querySelector("[data-refresh-ms]");
  if (live) { setupLiveRefresh(live); }
  const upload = document.getElementById("upload");
  if (upload) { setupUpload(upload); }
  const playground = document.getElementById("playground");
  if (playground) { setupPlayground(playground); }
});
