// The try-it page of the ELP speech server (served at GET /). Plain JS, no build step, no dependency.
// It only calls the public HTTP API (docs/API.md) with relative URLs, so it also works behind a prefix.
// It knows no task by name: every card, adapter choice and extra input comes from the registered
// tasks' description that server/ui.py (page_tasks) puts in the page's #elp-tasks data block.
"use strict";

const SAMPLE_RATE = 16000; // recordings are sent as 16 kHz mono 16-bit PCM WAV (the backbone's rate)
const KEY_STORAGE = "elp-api-key"; // sessionStorage: this tab only, gone when it closes

const $ = (id) => document.getElementById(id);
// [{name, set_task, route, title, summary, default_adapter, answer_fields, headline, extra_clips, enrolled_reference,
//   enrolled_gallery, options, stream, partials}]
const TASKS = JSON.parse($("elp-tasks").textContent);
const TASK = Object.fromEntries(TASKS.map((task) => [task.name, task]));
const ENROLMENT = TASKS.find((task) => task.enrolled_reference); // whose sets speakers are enrolled in
const clips = { clip: null }; // slot -> {blob, name}: "clip", then "<task>-<extra clip>" per extra upload
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

// A result card per task: data-state is idle | pending | done | error (tests wait on it).
function setCard(container, task, state, content) {
  let card = $(`result-${task.name}`);
  if (!card) {
    card = el("article", { id: `result-${task.name}`, class: "card" }, el("h3", { text: task.title }),
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

// One <select> per task that has sets in GET /adapters; the deployment's default first and selected.
async function loadAdapters() {
  const status = $("adapters-status");
  try {
    const rows = await api("adapters");
    const choices = $("adapter-choices");
    choices.replaceChildren();
    for (const task of TASKS) {
      const sets = rows.filter((row) => row.task === task.set_task);
      if (!sets.length) continue;
      const isDefault = (row) => row.id === task.default_adapter;
      const select = el("select", { id: `adapter-${task.name}`, "data-task": task.name });
      for (const row of sets.sort((a, b) => isDefault(b) - isDefault(a) || a.id.localeCompare(b.id))) {
        const option = el("option", { value: row.id, text: row.id + (isDefault(row) ? " (default)" : "") });
        if (row.error) Object.assign(option, { disabled: true, text: `${row.id} (unusable: ${row.error})` });
        select.append(option);
      }
      choices.append(el("div", { class: "choice" },
        el("label", { for: select.id, text: `${task.title} set` }), select, ...optionInputs(task)));
    }
    status.textContent = `${rows.length} adapter sets in the store.`;
  } catch (err) {
    status.textContent = `Could not list the adapter sets: ${err.message}`;
    status.className = "error";
  }
  updateButtons();
}

// A number input per option of the task (diarization's number of speakers; empty = not sent), a checkbox per
// switch (sent as true when ticked), a text input per text option (identification's speakers).
function optionInputs(task) {
  return task.options.flatMap((option) => {
    const id = `option-${task.name}-${option.name}`;
    const input = option.switch ? el("input", { id, type: "checkbox" })
      : option.text ? el("input", { id, type: "text", placeholder: "all" })
      : el("input", { id, type: "number", placeholder: "auto",
        ...(option.minimum === null ? {} : { min: option.minimum }), ...(option.maximum === null ? {} : { max: option.maximum }),
        ...(option.integer ? { step: 1 } : { step: "any" }) });
    return [el("label", { for: id, title: option.description, text: words(option.name) }), input];
  });
}

function adapterFor(task) {
  const select = $(`adapter-${task.name}`);
  return select ? select.value : "";
}

// GET /speakers -> one option per speaker id (a speaker may be enrolled under several versions).
async function loadSpeakers() {
  const { field } = ENROLMENT.enrolled_reference;
  const select = $(`enrolled-${ENROLMENT.name}`);
  const status = $(`enrolled-${ENROLMENT.name}-status`);
  if (!select) return; // no extra clip of that task to stand in for: nothing lists speakers
  try {
    const rows = await api("speakers");
    const ids = [...new Set(rows.map((row) => row.speaker))].sort();
    select.replaceChildren(...(ids.length ? ids.map((id) => el("option", { value: id, text: id }))
      : [el("option", { value: "", text: "(none enrolled)" })]));
    status.textContent = `${ids.length} enrolled ${field}(s).`;
    status.className = "muted";
  } catch (err) {
    status.textContent = `Could not list the enrolled: ${err.message}`;
    status.className = "error";
  }
  updateButtons();
}

// ---- inputs of the tasks that take more than the clip --------------------------------------------

// Record / pick controls of one clip slot (ids record-<slot>, file-<slot>, status-<slot>).
function clipControls(slot, description) {
  clips[slot] = null;
  const record = el("button", { id: `record-${slot}`, type: "button", class: "record", "aria-pressed": "false" },
    "Record");
  const file = el("input", { id: `file-${slot}`, type: "file", accept: "audio/*,.wav,.flac,.ogg,.opus" });
  record.addEventListener("click", () => (recording ? stopRecording() : startRecording(slot)));
  file.addEventListener("change", (event) => {
    const picked = event.target.files[0];
    if (picked) setClip(slot, picked, picked.name); // sent as picked: the server decodes any libsndfile format
  });
  return el("div", { id: `${slot}-clip-choice`, class: "row" }, record,
    el("span", { id: `record-${slot}-time`, class: "muted", "data-elapsed": "0" }),
    el("label", { class: "file" }, "or pick a file", file),
    el("p", { id: `status-${slot}`, class: "muted", "aria-live": "polite", text: `Not picked yet: ${description}.` }));
}

// The choice "a clip or an enrolled <field>" for the extra clip an enrolled reference may replace.
function enrolledControls(task, slot, clip) {
  const { field } = task.enrolled_reference;
  const kind = `${slot}-kind`;
  const radio = (value, text) => el("label", {}, el("input", { type: "radio", name: kind, value,
    ...(value === "clip" ? { checked: "" } : {}) }), ` ${text}`);
  const choice = el("fieldset", {}, el("legend", { text: "Along with your clip, send" }),
    radio("clip", clip.description), radio("enrolled", `an enrolled ${field}`));
  const select = el("select", { id: `enrolled-${task.name}` }, el("option", { value: "", text: "(none enrolled)" }));
  const refresh = el("button", { type: "button" }, "Refresh list");
  const enrolled = el("div", { id: `${slot}-enrolled-choice`, class: "row", hidden: "" },
    el("label", { for: select.id, text: words(field) }), select, refresh,
    el("p", { id: `${select.id}-status`, class: "muted", "aria-live": "polite" }));
  choice.addEventListener("change", () => {
    const useEnrolled = usesEnrolled(task);
    $(`${slot}-clip-choice`).hidden = useEnrolled;
    enrolled.hidden = !useEnrolled;
    if (useEnrolled) loadSpeakers();
    updateButtons();
  });
  select.addEventListener("change", updateButtons);
  refresh.addEventListener("click", loadSpeakers);
  return [choice, enrolled];
}

// A section per task with extra clips: their inputs, its own send button and result cards.
function buildTaskInputs() {
  let number = 4;
  for (const task of TASKS.filter((t) => t.extra_clips.length)) {
    const heading = el("h2", { id: `inputs-${task.name}-heading`, text: `${number++}. ${task.title}` });
    const section = el("section", { "aria-labelledby": heading.id }, heading,
      el("p", { class: "muted", text: task.summary }));
    for (const clip of task.extra_clips) {
      const slot = `${task.name}-${clip.name}`;
      const replaceable = task.enrolled_reference && task.enrolled_reference.instead_of === clip.name;
      const controls = clipControls(slot, clip.description);
      if (!replaceable) section.append(controls);
      else {
        const [choice, enrolled] = enrolledControls(task, slot, clip);
        section.append(choice, controls, enrolled);
      }
    }
    const send = el("button", { id: `run-${task.name}`, type: "button", class: "primary", disabled: "" },
      `Send to ${task.title.toLowerCase()}`);
    send.addEventListener("click", () => runTask(task, $(`results-${task.name}`)));
    section.append(send, el("div", { id: `results-${task.name}`, class: "cards", "aria-live": "polite" }));
    $("task-inputs").append(section);
  }
  $("admin").hidden = !ENROLMENT;
  $("admin-heading").textContent = `${number}. Admin`;
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

// The raw microphone (the models were not trained on browser noise suppression or gain control), or null
// after telling `report` why not (also used by live.js).
async function openMicrophone(report) {
  if (!navigator.mediaDevices) { // browsers only lend the microphone to https:// or localhost pages
    report("The microphone needs this page on https:// or localhost.");
    return null;
  }
  try {
    return await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) {
    report(`No microphone: ${err.message}`);
    return null;
  }
}

async function startRecording(slot) {
  const button = $(`record-${slot}`);
  const clock = $(`record-${slot}-time`);
  const stream = await openMicrophone((text) => { clock.textContent = `${text} Pick a file instead.`; });
  if (!stream) return;
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

// Whether the task's enrolled reference is chosen instead of its clip.
function usesEnrolled(task) {
  if (!task.enrolled_reference) return false;
  const kind = `${task.name}-${task.enrolled_reference.instead_of}-kind`;
  const checked = document.querySelector(`input[name="${kind}"]:checked`);
  return checked !== null && checked.value === "enrolled";
}

// The task's request fields besides file and adapter, or null while one is missing.
function extraFields(task) {
  const fields = [];
  for (const clip of task.extra_clips) {
    if (usesEnrolled(task) && task.enrolled_reference.instead_of === clip.name) {
      const speaker = $(`enrolled-${task.name}`).value;
      if (!speaker) return null;
      fields.push([task.enrolled_reference.field, speaker]);
    } else {
      const picked = clips[`${task.name}-${clip.name}`];
      if (!picked) return null;
      fields.push([clip.name, picked.blob, picked.name]);
    }
  }
  for (const option of task.options) {
    const input = $(`option-${task.name}-${option.name}`);
    if (input && option.switch) {
      if (input.checked) fields.push([option.name, "true"]);
    } else if (input && input.value !== "") fields.push([option.name, input.value]);
  }
  return fields;
}

// POST the clip (and the task's extra fields) to the task's route with its chosen set; render the answer.
async function runTask(task, container) {
  setCard(container, task, "pending", [el("p", { class: "muted", text: "working…" })]);
  const form = new FormData();
  form.append("file", clips.clip.blob, clips.clip.name);
  if (adapterFor(task)) form.append("adapter", adapterFor(task));
  for (const field of extraFields(task)) form.append(...field);
  try {
    setCard(container, task, "done", renderAnswer(task, await api(task.route.replace(/^\//, ""),
      { method: "POST", form })));
  } catch (err) {
    showError(container, task, err);
  }
}

// One click, every task with a set, concurrently (the server batches them into one encoder pass);
// a task that takes more than the clip is sent too once its inputs are there.
// A task that compares the clip with the enrolled speakers (identification) needs the key: without one typed
// into the page its card says so instead of showing the server's 403.
async function runAll() {
  const tasks = [...document.querySelectorAll("#adapter-choices select")].map((s) => TASK[s.dataset.task]);
  const ready = tasks.filter((task) => extraFields(task) !== null);
  for (const task of ready.filter((t) => t.enrolled_gallery && !apiKey)) {
    setCard($("results"), task, "skipped", [el("p", { class: "muted",
      text: "Compares the clip with the enrolled speakers: type the API key (Admin, below) to send it." })]);
  }
  await Promise.all(ready.filter((task) => !task.enrolled_gallery || apiKey).map((task) =>
    runTask(task, task.extra_clips.length ? $(`results-${task.name}`) : $("results"))));
}

async function enrol() {
  const status = $("admin-status");
  const speaker = $("enrol-id").value.trim();
  const form = new FormData();
  form.append("file", clips.clip.blob, clips.clip.name);
  if (adapterFor(ENROLMENT)) form.append("adapter", adapterFor(ENROLMENT));
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
  for (const task of TASKS.filter((t) => t.extra_clips.length)) {
    $(`run-${task.name}`).disabled = busy || !clips.clip || extraFields(task) === null;
  }
  $("enrol").disabled = busy || !clips.clip || !$("enrol-id").value.trim();
  for (const slot of Object.keys(clips)) $(`record-${slot}`).disabled = busy && recording.slot !== slot;
}

// ---- wiring ------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  buildTaskInputs();
  $("record-clip").addEventListener("click", () => (recording ? stopRecording() : startRecording("clip")));
  $("file-clip").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) setClip("clip", file, file.name); // sent as picked: the server decodes any libsndfile format
  });
  $("run").addEventListener("click", runAll);
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
