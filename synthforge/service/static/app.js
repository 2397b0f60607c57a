// The dashboard's few behaviours, without a build step or a CDN: refreshing fragments, the live log,
// the recipe editor's validation, the dataset preview.
"use strict";

const csrf = () => document.body.dataset.csrf || "";
const finished = (status) => ["succeeded", "failed", "cancelled"].includes(status);

function refreshEvery(element) {
  const every = Number(element.dataset.every || 0);
  if (!every) return;
  const timer = setInterval(async () => {
    const answer = await fetch(element.dataset.refresh, { credentials: "same-origin" });
    if (!answer.ok) return;
    element.innerHTML = await answer.text();
    const summary = element.querySelector("[data-status]");
    if (summary && finished(summary.dataset.status)) {
      clearInterval(timer);
      setTimeout(() => location.reload(), 300);  // the files, preview and report appear with the finished page
    }
  }, every);
}

function streamLog(element) {
  if (element.dataset.live !== "yes") return;
  const source = new EventSource(element.dataset.stream);
  source.addEventListener("log", (event) => {
    const line = JSON.parse(event.data).line;
    const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - 20;
    element.append(line + "\n");
    if (atBottom) element.scrollTop = element.scrollHeight;
  });
  source.addEventListener("end", () => source.close());
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) source.close(); };
}

function validateAsTyped(textarea) {
  const message = document.getElementById("validation");
  const submit = document.getElementById("submit");
  let pending = null;
  const check = async () => {
    const params = textarea.form.elements.params.value.trim();
    let overrides = {};
    try { overrides = params ? JSON.parse(params) : {}; } catch (error) {
      message.className = "error"; message.textContent = "overrides: not JSON (" + error.message + ")";
      submit.disabled = true; return;
    }
    const answer = await fetch(textarea.dataset.validate, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify({ recipe_yaml: textarea.value, params: overrides }),
    });
    const verdict = await answer.json();
    if (verdict.valid) {
      message.className = "ok";
      message.textContent = `valid: ${verdict.name}, generator ${verdict.generator}, output ${verdict.output}`;
    } else {
      message.className = "error";
      message.textContent = verdict.error || verdict.detail || "invalid";
    }
    submit.disabled = !verdict.valid;
  };
  const later = () => { clearTimeout(pending); pending = setTimeout(check, 400); };
  textarea.addEventListener("input", later);
  textarea.form.elements.params.addEventListener("input", later);
  check();
}

async function preview(element) {
  const answer = await fetch(element.dataset.preview, { credentials: "same-origin" });
  const data = await answer.json();
  if (!answer.ok) { element.textContent = data.detail; return; }
  const table = document.createElement("table");
  table.className = "preview";
  const head = table.createTHead().insertRow();
  for (const column of data.columns) head.insertCell().outerHTML = `<th>${escapeHtml(column)}</th>`;
  const body = table.createTBody();
  for (const row of data.rows) {
    const tr = body.insertRow();
    for (const value of row) tr.insertCell().textContent = value === null ? "" : String(value);
  }
  element.replaceChildren();
  if (data.table) element.append(`table ${data.table} of ${data.tables.join(", ")}`);
  element.append(table);
}

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refreshEvery);
  document.querySelectorAll("[data-stream]").forEach(streamLog);
  document.querySelectorAll("[data-validate]").forEach(validateAsTyped);
  document.querySelectorAll("[data-preview]").forEach(preview);
});
