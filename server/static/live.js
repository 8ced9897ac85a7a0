// The try-it page's live section: the microphone streamed to WS /<task>/stream (docs/API.md, "Live streams"),
// each utterance's answer listed when its pause is heard, the words of the one being spoken shown as they
// grow. Uses ui.js's globals ($, el, TASKS, adapterFor, openMicrophone, SAMPLE_RATE); loaded after it.
"use strict";

let live = null; // {socket, context, stream, task}

function streamUrl(task) {
  const url = new URL(`${task.route.slice(1)}/stream`, document.baseURI); // relative: works behind a prefix
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const adapter = adapterFor(task);
  if (adapter) url.searchParams.set("adapter", adapter);
  return url;
}

// The headline of an answer as text (a label, a transcript, a yes/no).
function headlineText(task, message) {
  const value = message[task.headline];
  return typeof value === "string" ? value : JSON.stringify(value);
}

function setLiveStatus(text, isError = false) {
  const status = $("live-status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

function onLiveMessage(task, message) {
  const partial = $("live-partial");
  if (message.type === "ready") {
    setLiveStatus(`Listening (${message.adapter}); pause ${message.end_pause_s} s to end an utterance.`);
    $("live").dataset.state = "listening";
  } else if (message.type === "partial") {
    partial.textContent = headlineText(task, message);
  } else if (message.type === "result") {
    partial.textContent = "";
    const item = el("li", { "data-utterance": String(message.utterance) },
      el("span", { class: "muted", text: `${message.start_s.toFixed(1)}-${message.end_s.toFixed(1)} s ` }),
      el("span", { class: "answer-text", text: headlineText(task, message) }));
    item.dataset.value = headlineText(task, message);
    $("live-results").append(item);
  } else if (message.type === "error") {
    setLiveStatus(`${message.error.code}: ${message.error.message}`, true);
  } else if (message.type === "end") {
    setLiveStatus(`Ended: ${message.utterances} utterance(s) in ${message.audio_s.toFixed(1)} s.`);
    $("live").dataset.state = "ended";
  }
}

async function startLive() {
  const task = TASKS.find((t) => t.name === $("live-task").value);
  if (!window.AudioWorkletNode) {
    setLiveStatus("Live streams need an audio worklet: this browser, or this page outside https:// or localhost, has none.", true);
    return;
  }
  const stream = await openMicrophone((text) => setLiveStatus(text, true));
  if (!stream) return;
  const context = new AudioContext({ sampleRate: SAMPLE_RATE }); // capture.js resamples if the browser will not
  await context.audioWorklet.addModule("ui/capture.js");
  const capture = new AudioWorkletNode(context, "pcm-capture");
  const mute = context.createGain();
  mute.gain.value = 0; // the graph must reach the speakers to be pulled; nothing is heard
  context.createMediaStreamSource(stream).connect(capture).connect(mute).connect(context.destination);
  const socket = new WebSocket(streamUrl(task));
  socket.binaryType = "arraybuffer";
  capture.port.onmessage = (event) => {
    if (socket.readyState !== WebSocket.OPEN || !live || live.ending) return;
    const samples = event.data;
    const pcm = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768)));
    socket.send(pcm.buffer);
  };
  socket.onmessage = (event) => onLiveMessage(task, JSON.parse(event.data));
  socket.onerror = () => setLiveStatus("The live stream could not be opened.", true);
  socket.onclose = () => stopCapture();
  live = { socket, context, stream, task, ending: false };
  $("live-results").replaceChildren();
  $("live-partial").textContent = "";
  setLiveStatus("Connecting…");
  $("live").textContent = "Stop";
  $("live").setAttribute("aria-pressed", "true");
  $("live-task").disabled = true;
}

// Stop sending; the server answers what is left, sends "end" and closes.
function stopLive() {
  live.ending = true;
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify({ type: "end" }));
  stopMicrophone();
}

function stopMicrophone() {
  if (!live || !live.stream) return;
  live.stream.getTracks().forEach((track) => track.stop());
  live.context.close();
  live.stream = null;
}

function stopCapture() {
  stopMicrophone();
  live = null;
  $("live").textContent = "Start live";
  $("live").setAttribute("aria-pressed", "false");
  $("live-task").disabled = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const streamable = TASKS.filter((task) => task.stream);
  $("live-task").replaceChildren(...streamable.map((task) => el("option", {
    value: task.name, text: task.title + (task.partials ? " (words as you speak)" : "") })));
  $("live").addEventListener("click", () => (live && !live.ending ? stopLive() : live ? null : startLive()));
});
