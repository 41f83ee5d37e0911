// The runner's dashboard: plain JavaScript over the runner's own API, same origin, no dependencies.
// Text from models and requests is only ever set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
let streaming = null;

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function seconds(s) {
  if (s == null) return "";
  if (s < 60) return Math.round(s) + "s";
  if (s < 3600) return Math.round(s / 60) + "m";
  return (s / 3600).toFixed(1) + "h";
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

async function refreshStatus() {
  try {
    const s = await getJSON("/engines/status");
    $("status").textContent = "mdl " + s.version + " · " + Object.values(s.backends).join(", ") +
      " · idle models unload after " + s.keep_alive;
    $("status").className = "muted";
  } catch (e) {
    $("status").textContent = "not answering (" + e.message + ")";
    $("status").className = "status-bad";
  }
}

async function refreshStore() {
  const models = await getJSON("/models");
  const body = $("store").tBodies[0];
  body.replaceChildren();
  const chatModels = [];
  for (const m of models) {
    const c = m.config || {};
    const names = m.tags && m.tags.length ? m.tags : [m.id.slice(0, 19)];
    const row = document.createElement("tr");
    cell(row, names.join(", "));
    cell(row, c.format || "");
    cell(row, c.size || "", "num");
    cell(row, c.parameters || "", "num");
    cell(row, c.quantization || "");
    body.appendChild(row);
  }
  const served = await getJSON("/engines/v1/models");
  for (const m of served.data) chatModels.push(m.id);
  const select = $("chat-model");
  const chosen = select.value;
  select.replaceChildren();
  for (const id of chatModels) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = id;
    select.appendChild(opt);
  }
  if (chatModels.includes(chosen)) select.value = chosen;
}

async function refreshLoaded() {
  const rows = await getJSON("/engines/ps");
  const body = $("loaded").tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const row = document.createElement("tr");
    cell(row, r.model_name);
    cell(row, r.mode);
    cell(row, bytes(r.memory), "num");
    cell(row, r.pid ? "pid " + r.pid : "");
    cell(row, r.loading ? "loading" : r.in_use ? "busy" + (r.waiting ? " (+" + r.waiting + " waiting)" : "")
      : "idle " + seconds(r.idle_seconds));
    cell(row, r.keep_alive);
    body.appendChild(row);
  }
  $("loaded-empty").hidden = rows.length > 0;
}

function addRequest(r, fresh) {
  const row = document.createElement("tr");
  if (fresh) row.className = "fresh";
  row.dataset.id = r.id;
  cell(row, (r.time || "").slice(11, 19));
  cell(row, r.api + (r.stream ? " (stream)" : ""));
  cell(row, r.model || r.requested);
  const status = cell(row, r.status + (r.error && r.status >= 400 ? " " + r.error : ""), "text");
  if (r.status >= 400) status.classList.add("status-bad");
  cell(row, (r.prompt_tokens ?? "-") + " / " + (r.completion_tokens ?? "-"), "num");
  cell(row, Math.round(r.latency_ms) + " ms", "num");
  cell(row, r.prompt, "text");
  cell(row, r.response, "text");
  const body = $("requests").tBodies[0];
  body.insertBefore(row, body.firstChild);
  while (body.rows.length > 100) body.deleteRow(body.rows.length - 1);
}

function followRequests() {
  const source = new EventSource("/engines/requests?follow=1");
  const seen = new Set();
  source.onopen = () => { $("requests-live").textContent = "(live)"; };
  source.onmessage = (event) => {
    const r = JSON.parse(event.data);
    if (seen.has(r.id)) return;
    seen.add(r.id);
    addRequest(r, true);
    refreshLoaded().catch(() => {});
  };
  source.onerror = () => { $("requests-live").textContent = "(reconnecting…)"; };
}

function say(who, text) {
  const p = document.createElement("p");
  p.className = "msg";
  const b = document.createElement("b");
  b.textContent = who + ": ";
  const span = document.createElement("span");
  span.textContent = text;
  p.append(b, span);
  $("transcript").appendChild(p);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  return span;
}

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || streaming) return;
  $("chat-error").textContent = "";
  $("chat-input").value = "";
  history.push({ role: "user", content: text });
  say("you", text);
  const answer = say($("chat-model").value, "");
  answer.id = "answer-" + history.length;
  streaming = new AbortController();
  $("chat-send").disabled = true;
  $("chat-stop").disabled = false;
  let reply = "";
  try {
    const r = await fetch("/engines/v1/chat/completions", {
      method: "POST", signal: streaming.signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ model: $("chat-model").value, messages: history, stream: true }),
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || "HTTP " + r.status);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const doc = JSON.parse(line.slice(6));
        if (doc.error) throw new Error(doc.error.message);
        const piece = doc.choices && doc.choices[0] && doc.choices[0].delta && doc.choices[0].delta.content;
        if (piece) { reply += piece; answer.textContent = reply; }
      }
    }
    history.push({ role: "assistant", content: reply });
    answer.parentElement.classList.add("done");
  } catch (e) {
    history.pop();
    if (e.name !== "AbortError") $("chat-error").textContent = e.message;
  } finally {
    streaming = null;
    $("chat-send").disabled = false;
    $("chat-stop").disabled = true;
  }
}

function start() {
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("chat-stop").addEventListener("click", () => streaming && streaming.abort());
  $("chat-clear").addEventListener("click", () => { history.length = 0; $("transcript").replaceChildren(); });
  refreshStatus();
  refreshStore().catch((e) => { $("chat-error").textContent = e.message; });
  refreshLoaded().catch(() => {});
  followRequests();
  setInterval(() => { refreshLoaded().catch(() => {}); refreshStatus(); }, 2000);
  setInterval(() => { refreshStore().catch(() => {}); }, 15000);
}

document.addEventListener("DOMContentLoaded", start);
