// The try-it page of the ELP speech server (served at GET /). Plain JS, no build step, no dependency.
// It only calls the public HTTP API (docs/API.md) with relative URLs, so it also works behind a prefix.
"use strict";

// Adapter-config task -> endpoint and card title. Tasks the page does not know are ignored.
const TASKS = {
  asr: { endpoint: "asr", title: "Speech recognition" },
  intent: { endpoint: "intent", title: "Intent" },
  emotion: { endpoint: "emotion", title: "Emotion" },
  language: { endpoint: "language", title: "Language" },
  language_id: { endpoint: "language", title: "Language" },
  verification: { endpoint: "verify", title: "Speaker verification", verify: true },
};
const SAMPLE_RATE = 16000; // recordings are sent as 16 kHz mono 16-bit PCM WAV (the backbone's rate)
const KEY_STORAGE = "elp-api-key"; // sessionStorage: this tab only, gone when it closes

const $ = (id) => document.getElementById(id);
const clips = { clip: null, reference: null }; // {blob, name}
let recording = null; // {slot, recorder, stream, timer}
let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";

// ---- HTTP ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// fetch + the API's JSON error shape ({"error": {"code", "message"}}) turned into an ApiError.
async function api(path, { method = "GET", form = null } = {}) {
  const headers = apiKey ? { "X-API-Key": apiKey } : {};
  let response;
  try {
    response = await fetch(path, { method, body: form, headers });
  } catch (err) {
    throw new ApiError(0, "network", `the server could not be reached (${err.message})`);
  }
  const body = await response.json().catch(() => null);
  if (response.ok) return body;
  const error = (body && body.error) || {};
  let message = error.message || `HTTP ${response.status} ${response.statusText}`;
  const retry = response.headers.get("Retry-After");
  if (retry) message += ` (retry in ${retry} s)`;
  throw new ApiError(response.status, error.code || "http_error", message);
}

// ---- small DOM helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

// Probability bars, highest first; the exact value is kept in data-score (tests compare it).
function scoreBars(scores, limit) {
  const entries = Object.entries(scores).sort((a, b) => b[1] - a[1]).slice(0, limit);
  const list = el("ul", { class: "bars", "aria-label": "scores" });
  for (const [label, score] of entries) {
    const fill = el("span", { class: "fill" });
    fill.style.width = percent(score); // CSSOM, allowed by the page's style-src 'self'
    list.append(el("li", { class: "bar", "data-label": label, "data-score": String(score) },
      el("span", { class: "name", text: label }),
      el("span", { class: "track", "aria-hidden": "true" }, fill),
      el("span", { class: "value", text: percent(score) })));
  }
  return list;
}

function timings(answer) {
  const t = answer.timings_ms || {};
  const ms = (v) => `${Math.round(v)} ms`;
  return el("p", { class: "timings muted" },
    `${ms(t.total)} in the server: inference ${ms(t.inference)}, queue ${ms(t.queue)}, decode ${ms(t.decode)}`,
    el("br"), `${answer.adapter}, ${answer.duration_s.toFixed(1)} s of audio`);
}

// One renderer per kind of answer; the shapes are docs/API.md's.
function renderAnswer(task, answer) {
  const parts = [];
  if (task === "asr") {
    parts.push(el("p", { class: "answer transcript", text: answer.text || "(nothing heard)" }));
  } else if (TASKS[task].verify) {
    const verdict = answer.same_speaker ? "same speaker" : "different speakers";
    parts.push(el("p", { class: "answer", "data-same-speaker": String(answer.same_speaker), text: verdict }),
      el("p", { class: "score", "data-score": String(answer.score),
        text: `score ${answer.score.toFixed(3)} (threshold ${answer.threshold.toFixed(3)})` +
          (answer.speaker ? ` against enrolled speaker ${answer.speaker}` : "") }));
  } else {
    const label = answer.intent ?? answer.label ?? answer.language ?? "";
    parts.push(el("p", { class: "answer", text: label }));
    if (answer.slots) {
      const slots = el("dl", { class: "slots" });
      for (const [name, value] of Object.entries(answer.slots)) {
        slots.append(el("div", {}, el("dt", { text: name }), el("dd", { "data-slot": name, text: value })));
      }
      parts.push(slots);
    }
    if (answer.scores) parts.push(scoreBars(answer.scores, 6));
  }
  parts.push(timings(answer));
  return parts;
}

// A result card per task: data-state is idle | pending | done | error (tests wait on it).
function setCard(container, task, state, content) {
  let card = $(`result-${task}`);
  if (!card) {
    card = el("article", { id: `result-${task}`, class: "card" }, el("h3", { text: TASKS[task].title }),
      el("div", { class: "body" }));
    container.append(card);
  }
  card.dataset.state = state;
  card.setAttribute("aria-busy", String(state === "pending"));
  card.querySelector(".body").replaceChildren(...content);
}

function showError(container, task, err) {
  const code = err.status ? `${err.status} ${err.code}` : err.code || "error";
  setCard(container, task, "error", [el("p", { class: "error", text: `${code}: ${err.message}` })]);
}

// ---- adapters, speakers ------------------------------------------------------------------------

// Fill one <select> per known task from GET /adapters; the default set first and selected.
async function loadAdapters() {
  const status = $("adapters-status");
  try {
    const rows = await api("adapters");
    const byTask = {};
    for (const row of rows) if (row.task in TASKS) (byTask[row.task] ||= []).push(row);
    const choices = $("adapter-choices");
    choices.replaceChildren();
    for (const task of Object.keys(TASKS).filter((t) => byTask[t])) {
      const select = el("select", { id: `adapter-${task}`, "data-task": task });
      for (const row of byTask[task].sort((a, b) => b.default - a.default || a.id.localeCompare(b.id))) {
        const option = el("option", { value: row.id, text: row.id + (row.default ? " (default)" : "") });
        if (row.error) Object.assign(option, { disabled: true, text: `${row.id} (unusable: ${row.error})` });
        select.append(option);
      }
      choices.append(el("div", { class: "choice" },
        el("label", { for: select.id, text: `${TASKS[task].title} set` }), select));
    }
    status.textContent = `${rows.length} adapter sets in the store.`;
  } catch (err) {
    status.textContent = `Could not list the adapter sets: ${err.message}`;
    status.className = "error";
  }
  updateButtons();
}

function adapterFor(task) {
  const select = $(`adapter-${task}`);
  return select ? select.value : "";
}

// GET /speakers -> one option per speaker id (a speaker may be enrolled under several versions).
async function loadSpeakers() {
  const select = $("speaker");
  const status = $("speakers-status");
  try {
    const rows = await api("speakers");
    const ids = [...new Set(rows.map((row) => row.speaker))].sort();
    select.replaceChildren(...(ids.length ? ids.map((id) => el("option", { value: id, text: id }))
      : [el("option", { value: "", text: "(none enrolled)" })]));
    status.textContent = `${ids.length} enrolled speaker(s).`;
    status.className = "muted";
  } catch (err) {
    status.textContent = `Could not list speakers: ${err.message}`;
    status.className = "error";
  }
  updateButtons();
}

// ---- clips: recording and picking --------------------------------------------------------------

function setClip(slot, blob, name, detail) {
  clips[slot] = { blob, name };
  $(`status-${slot}`).textContent = `${name}: ${detail || `${(blob.size / 1024).toFixed(0)} KiB`}`;
  const player = $(`player-${slot}`);
  if (player) {
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(blob);
    player.hidden = false;
  }
  updateButtons();
}

// Decode whatever MediaRecorder produced (webm/opus, mp4/aac), resample to 16 kHz mono, encode WAV.
async function toWav(blob) {
  const context = new OfflineAudioContext(1, 1, SAMPLE_RATE); // decodeAudioData resamples to its rate
  const audio = await context.decodeAudioData(await blob.arrayBuffer());
  const mono = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const channel = audio.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / audio.numberOfChannels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * mono.length));
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * mono.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, SAMPLE_RATE, true); view.setUint32(28, 2 * SAMPLE_RATE, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * mono.length, true);
  mono.forEach((x, i) => view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x)) * 0x7fff, true));
  return { wav: new Blob([view], { type: "audio/wav" }), seconds: mono.length / SAMPLE_RATE };
}

async function startRecording(slot) {
  const button = $(`record-${slot}`);
  const clock = $(`record-${slot}-time`);
  if (!navigator.mediaDevices) { // browsers only lend the microphone to https:// or localhost pages
    clock.textContent = "The microphone needs this page on https:// or localhost; pick a file instead.";
    return;
  }
  let stream;
  try {
    // raw microphone: the models were not trained on browser noise suppression or gain control
    stream = await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) {
    clock.textContent = `No microphone: ${err.message}`;
    return;
  }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    try {
      const { wav, seconds } = await toWav(new Blob(chunks, { type: recorder.mimeType }));
      setClip(slot, wav, "recording.wav", `${seconds.toFixed(1)} s recorded`);
    } catch (err) {
      $(`status-${slot}`).textContent = `The recording could not be decoded: ${err.message}`;
    }
  };
  const started = performance.now();
  const timer = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    clock.dataset.elapsed = seconds.toFixed(1);
    clock.textContent = `recording… ${seconds.toFixed(1)} s`;
  }, 100);
  recording = { slot, recorder, timer };
  recorder.start();
  button.textContent = "Stop";
  button.setAttribute("aria-pressed", "true");
  updateButtons();
}

function stopRecording() {
  const { slot, recorder, timer } = recording;
  clearInterval(timer);
  recorder.stop();
  recording = null;
  $(`record-${slot}`).textContent = "Record";
  $(`record-${slot}`).setAttribute("aria-pressed", "false");
  $(`record-${slot}-time`).textContent = "";
  updateButtons();
}

// ---- sending -----------------------------------------------------------------------------------

function referenceKind() {
  return document.querySelector("input[name=reference-kind]:checked").value;
}

function referenceReady() {
  return referenceKind() === "clip" ? clips.reference !== null : $("speaker").value !== "";
}

// POST the clip to one task endpoint with its chosen adapter set, and render the answer.
async function runTask(task, container) {
  setCard(container, task, "pending", [el("p", { class: "muted", text: "working…" })]);
  const form = new FormData();
  form.append("file", clips.clip.blob, clips.clip.name);
  if (adapterFor(task)) form.append("adapter", adapterFor(task));
  if (TASKS[task].verify) {
    if (referenceKind() === "clip") form.append("reference", clips.reference.blob, clips.reference.name);
    else form.append("speaker", $("speaker").value);
  }
  try {
    setCard(container, task, "done", renderAnswer(task, await api(TASKS[task].endpoint, { method: "POST", form })));
  } catch (err) {
    showError(container, task, err);
  }
}

// One click, every task, concurrently (the server batches them into one encoder pass).
async function runAll() {
  const tasks = [...document.querySelectorAll("#adapter-choices select")].map((s) => s.dataset.task);
  const jobs = tasks.filter((t) => !TASKS[t].verify).map((t) => runTask(t, $("results")));
  if (tasks.includes("verification") && referenceReady()) jobs.push(runTask("verification", $("verify-results")));
  await Promise.all(jobs);
}

async function enrol() {
  const status = $("admin-status");
  const speaker = $("enrol-id").value.trim();
  const form = new FormData();
  form.append("file", clips.clip.blob, clips.clip.name);
  if (adapterFor("verification")) form.append("adapter", adapterFor("verification"));
  try {
    const row = await api(`speakers/${encodeURIComponent(speaker)}`, { method: "POST", form });
    status.textContent = `Enrolled ${row.speaker} under ${row.adapter}.`;
    status.className = "";
    await loadSpeakers();
  } catch (err) {
    status.textContent = `${err.status} ${err.code}: ${err.message}`;
    status.className = "error";
  }
}

function updateButtons() {
  const busy = recording !== null;
  $("run").disabled = busy || !clips.clip || !$("adapter-choices").querySelector("select");
  $("verify").disabled = busy || !clips.clip || !referenceReady();
  $("enrol").disabled = busy || !clips.clip || !$("enrol-id").value.trim();
  for (const slot of Object.keys(clips)) $(`record-${slot}`).disabled = busy && recording.slot !== slot;
}

// ---- wiring ------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const slot of Object.keys(clips)) {
    $(`record-${slot}`).addEventListener("click", () => (recording ? stopRecording() : startRecording(slot)));
    $(`file-${slot}`).addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) setClip(slot, file, file.name); // sent as picked: the server decodes any libsndfile format
    });
  }
  for (const radio of document.querySelectorAll("input[name=reference-kind]")) {
    radio.addEventListener("change", () => {
      $("reference-clip-choice").hidden = referenceKind() !== "clip";
      $("reference-speaker-choice").hidden = referenceKind() !== "speaker";
      if (referenceKind() === "speaker") loadSpeakers();
      updateButtons();
    });
  }
  $("speaker").addEventListener("change", updateButtons);
  $("refresh-speakers").addEventListener("click", loadSpeakers);
  $("run").addEventListener("click", runAll);
  $("verify").addEventListener("click", () => runTask("verification", $("verify-results")));
  $("enrol").addEventListener("click", enrol);
  $("enrol-id").addEventListener("input", updateButtons);
  $("api-key").value = apiKey;
  $("api-key").addEventListener("input", (event) => {
    apiKey = event.target.value;
    if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  loadAdapters();
});
