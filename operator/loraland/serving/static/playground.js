// The LoRA Land playground: one prompt to the base model and up to four adapters at once,
// each answer streamed from POST /generate_stream (the TGI stream API) into its own panel
// with the load tests' timings. Plain JavaScript, no build step, no outside requests: it
// uses only this server's public APIs (/info, /admin/adapters, /generate_stream, /metrics).
"use strict";

const MAX_CHOSEN = 4;
const ADAPTERS_EVERY_MS = 2000;
const METRICS_EVERY_MS = 1500;

const $ = (id) => document.getElementById(id);
const chosen = new Set(); // adapter names ticked in the table, in the order they were ticked
let adapters = []; // the last /admin/adapters answer
let adaptersKey = ""; // its JSON, to redraw the table only when something changed
let baseName = "base model";
let inFlight = null; // AbortController of the comparison that is running

// --- small helpers -------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("data-") || key === "title") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

function gain(scores) {
  if (!scores || scores.base === null || scores.base === undefined) return "–";
  const points = 100 * (scores.adapter - scores.base);
  return `${points >= 0 ? "+" : ""}${points.toFixed(1)}`;
}

function duration(ms) {
  if (ms === null) return "–";
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// Loaded adapters are "loaded" while their weights sit in a compute slot, else they wait in
// host memory or on disk (the server's cache tiers); Pending and Failed say so.
function stateLabel(adapter) {
  if (adapter.state !== "Loaded") return adapter.state.toLowerCase();
  return { device: "loaded", host: "host", disk: "disk" }[adapter.tier] || "loaded";
}

// The message of an error answer in either of the server's shapes (TGI or OpenAI).
async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    const error = body.error;
    if (error && typeof error === "object") return error.message || JSON.stringify(error);
    if (error !== undefined && error !== null) return String(error);
    if (body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) {
    // not JSON: show the text itself
  }
  return text.slice(0, 300) || response.statusText;
}

// --- adapter table -------------------------------------------------------------------

function renderAdapters() {
  const names = new Set(adapters.filter((a) => a.state === "Loaded").map((a) => a.name));
  for (const name of [...chosen]) if (!names.has(name)) chosen.delete(name);
  const rows = adapters.map((a) => {
    const box = el("input", {
      type: "checkbox",
      checked: chosen.has(a.name),
      disabled: a.state !== "Loaded" || (chosen.size >= MAX_CHOSEN && !chosen.has(a.name)),
      "data-name": a.name,
      title: a.state === "Loaded" ? `compare ${a.name}` : a.message,
    });
    box.addEventListener("change", () => {
      if (box.checked) chosen.add(a.name);
      else chosen.delete(a.name);
      renderAdapters();
    });
    const s = a.scores;
    const state = el("span", { className: `state state-${stateLabel(a)}`, title: a.message }, stateLabel(a));
    return el(
      "tr",
      { "data-name": a.name, className: chosen.has(a.name) ? "chosen" : "" },
      el("td", {}, box),
      el("td", { className: "name", title: a.uri }, a.name),
      el("td", {}, a.task || "–"),
      el("td", {}, s ? s.metric : "–"),
      el("td", { className: "num" }, percent(s ? s.base : null)),
      el("td", { className: "num strong" }, percent(s ? s.adapter : null)),
      el("td", { className: `num gain${s && s.base !== null && s.adapter < s.base ? " worse" : ""}` }, gain(s)),
      el("td", { className: "num" }, a.rank === null || a.rank === undefined ? "–" : String(a.rank)),
      el("td", {}, state),
    );
  });
  document.querySelector("#adapters tbody").replaceChildren(...rows);
  $("adapters-empty").hidden = adapters.length > 0;
  $("chosen").textContent = `base model + ${chosen.size} of ${MAX_CHOSEN} adapters`;
  $("live-registered").textContent = String(adapters.length);
}

async function refreshAdapters() {
  try {
    const response = await fetch("/admin/adapters", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    const key = JSON.stringify(body.adapters);
    if (key !== adaptersKey) {
      adaptersKey = key;
      adapters = body.adapters;
      renderAdapters();
    }
  } catch (_) {
    $("live").dataset.ok = "false"; // the live view shows the server is unreachable
  }
  setTimeout(refreshAdapters, ADAPTERS_EVERY_MS);
}

// --- live view -----------------------------------------------------------------------

// Prometheus text format -> {"name{labels}": value}; comments and blank lines skipped.
function parseMetrics(text) {
  const values = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m) values[m[1] + (m[2] || "")] = Number(m[3]);
  }
  return values;
}

function pick(values, ...keys) {
  for (const key of keys) if (key in values) return String(values[key]);
  return "–";
}

async function refreshMetrics() {
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const m = parseMetrics(await response.text());
    $("live-running").textContent = pick(m, "loraland_running_requests", "vllm:num_requests_running");
    $("live-waiting").textContent = pick(m, "loraland_queue_depth", "vllm:num_requests_waiting");
    $("live-loaded").textContent = pick(m, 'loraland_adapters{tier="device"}');
    $("live-host").textContent = pick(m, 'loraland_adapters{tier="host"}');
    $("live").dataset.ok = "true";
  } catch (_) {
    $("live").dataset.ok = "false";
  }
  setTimeout(refreshMetrics, METRICS_EVERY_MS);
}

// --- one streamed answer ---------------------------------------------------------------

// Server-sent events -> the data of each event. Lines may end in \r\n (sse-starlette) or \n.
async function* sseData(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A chunk may end between \r and \n: keep a trailing \r for the next round.
    const hold = buffer.endsWith("\r") ? "\r" : "";
    let text = buffer.slice(0, buffer.length - hold.length).replace(/\r\n?/g, "\n");
    let end;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const data = text
        .slice(0, end)
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      text = text.slice(end + 2);
      if (data) yield data;
    }
    buffer = text + hold;
  }
}

function makePanel(adapter) {
  const info = adapters.find((a) => a.name === adapter);
  const s = info && info.scores;
  const subtitle = adapter === null
    ? "no adapter"
    : s ? `${s.task} · ${s.metric} ${percent(s.adapter)} (base ${percent(s.base)})` : info && info.task ? info.task : "adapter";
  const cells = {};
  const metric = (key, label) => {
    cells[key] = el("dd", { "data-metric": key }, "–");
    return el("div", {}, el("dt", {}, label), cells[key]);
  };
  const output = el("pre", { className: "output" });
  const error = el("p", { className: "error", hidden: true });
  const status = el("span", { className: "status" }, "waiting");
  const node = el(
    "article",
    { className: "panel", "data-target": adapter === null ? "base" : adapter, "data-state": "waiting" },
    el(
      "header",
      {},
      el("span", { className: "kind" }, adapter === null ? "base model" : "adapter"),
      status,
      el("h3", {}, adapter === null ? baseName : adapter),
      el("div", { className: "muted subtitle" }, subtitle),
    ),
    output,
    error,
    el("dl", { className: "timings" }, metric("ttft", "TTFT"), metric("total", "total"), metric("tps", "tokens/s"), metric("tokens", "tokens")),
  );
  $("panels").append(node);
  const setState = (state, text) => {
    node.dataset.state = state;
    status.textContent = text || state;
  };
  return {
    setState,
    append: (text) => output.append(text),
    fail(message) {
      error.textContent = message;
      error.hidden = false;
      setState("error");
    },
    // The seed's definitions, as loraland.loadtest.metrics computes them.
    timings(t) {
      const total = t.last === null ? null : t.last - t.sent;
      const streaming = t.last === null ? null : t.last - t.first;
      cells.ttft.textContent = duration(t.first === null ? null : t.first - t.sent);
      cells.total.textContent = duration(total);
      cells.tps.textContent = streaming ? (t.tokens / (streaming / 1000)).toFixed(1) : "–";
      cells.tokens.textContent = String(t.tokens);
    },
  };
}

async function runPanel(adapter, prompt, parameters, signal) {
  const panel = makePanel(adapter);
  const body = { inputs: prompt, parameters: { ...parameters, details: true } };
  if (adapter !== null) body.parameters.adapter_id = adapter;
  const t = { sent: performance.now(), first: null, last: null, tokens: 0 };
  try {
    const response = await fetch("/generate_stream", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) {
      panel.fail(`HTTP ${response.status}: ${await errorText(response)}`);
      return;
    }
    panel.setState("streaming");
    let frames = 0;
    for await (const data of sseData(response.body)) {
      const frame = JSON.parse(data);
      if (frame.error !== undefined && !frame.token) {
        panel.fail(`${frame.error_type || "error"}: ${frame.error}`);
        return;
      }
      const now = performance.now();
      if (frame.token) {
        if (t.first === null) t.first = now;
        t.last = now;
        frames += 1;
        if (!frame.token.special) panel.append(frame.token.text);
      }
      // Like the load tests: the server's own count when it reports one, else the frames.
      const reported = frame.details && frame.details.generated_tokens;
      t.tokens = Number.isInteger(reported) && reported > 0 ? reported : frames;
      panel.timings(t);
      if (frame.generated_text !== null && frame.generated_text !== undefined) {
        panel.setState("done", `done · ${frame.details ? frame.details.finish_reason : ""}`);
        return;
      }
    }
    panel.fail("the stream ended before its last event");
  } catch (err) {
    panel.fail(err.name === "AbortError" ? "stopped" : `${err.name}: ${err.message}`);
  }
}

// Number fields go to the server as numbers when they are numbers, and as typed otherwise,
// so that the server's validation (not the browser's) names what is wrong.
function numberOrText(value) {
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
}

function readParameters() {
  const parameters = {};
  const maxNew = $("max-new-tokens").value;
  if (maxNew.trim() !== "") parameters.max_new_tokens = numberOrText(maxNew);
  if ($("greedy").checked) {
    parameters.do_sample = false;
  } else {
    parameters.do_sample = true;
    const temperature = $("temperature").value;
    if (temperature.trim() !== "") parameters.temperature = numberOrText(temperature);
  }
  return parameters;
}

async function compare(event) {
  event.preventDefault();
  if (inFlight) return;
  inFlight = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  $("panels").replaceChildren();
  const prompt = $("prompt").value;
  const parameters = readParameters();
  const targets = [null, ...chosen];
  try {
    await Promise.all(targets.map((a) => runPanel(a, prompt, parameters, inFlight.signal)));
  } finally {
    inFlight = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

async function start() {
  $("prompt-form").addEventListener("submit", compare);
  $("stop").addEventListener("click", () => inFlight && inFlight.abort());
  const greedy = $("greedy");
  const syncTemperature = () => ($("temperature").disabled = greedy.checked);
  greedy.addEventListener("change", syncTemperature);
  syncTemperature();
  try {
    const info = await (await fetch("/info", { cache: "no-store" })).json();
    baseName = info.model_id;
    $("model").textContent = `${info.model_id} · ${info.model_device_type} · ${info.model_dtype} · max ${info.max_total_tokens} tokens`;
  } catch (_) {
    $("model").textContent = "server unreachable";
  }
  refreshAdapters();
  refreshMetrics();
}

start();
