// The try-it page's DOM helpers and answer rendering (loaded before ui.js; plain functions, no state).
// An answer is drawn from its task's description (#elp-tasks, see server/ui.py), never by task name.
"use strict";

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

const words = (field) => field.replaceAll("_", " ");
const shown = (value) => (typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3)
  : typeof value === "boolean" ? (value ? "yes" : "no") : String(value));

// Longer lists than this are shown folded (a long recording's words), so the answer stays readable.
const FOLD_ROWS = 12;

// A list of records (a long recording's segments, a transcript's words) as a table, its columns every key of
// the records in order of first appearance (a field only some records carry: an empty cell for the others);
// folded under a summary line when it is long.
function rowsTable(field, records) {
  const columns = [...new Set(records.flatMap((record) => Object.keys(record)))];
  const head = el("tr", {}, ...columns.map((column) => el("th", { text: words(column) })));
  const cell = (value) => el("td", value === undefined ? { text: "" }
    : typeof value === "number" ? { class: "number", text: shown(value) } : { text: shown(value) });
  const body = records.map((record) => el("tr", {}, ...columns.map((column) => cell(record[column]))));
  const table = el("table", { class: "records", "data-field": field, "aria-label": words(field) },
    el("thead", {}, head), el("tbody", {}, ...body));
  if (records.length <= FOLD_ROWS) return table;
  return el("details", { class: "records" }, el("summary", { text: `${words(field)} (${records.length})` }), table);
}

// The headline field large (a yes/no or number field with its name: "same speaker: no"), then every other
// field of the task's own answer by the shape of its value: a map of numbers as bars, a map of
// strings and the scalars as name/value lists; then the timings. The exact values are kept in
// data-value / data-score (tests compare them with the API's).
function renderAnswer(task, answer) {
  const value = answer[task.headline];
  const named = typeof value === "boolean" || typeof value === "number"; // a bare "no" or "2" says nothing
  const headline = named ? `${words(task.headline)}: ${shown(value)}`
    : value === "" ? "(empty)" : value === undefined || value === null ? "(none)" : shown(value);
  const parts = [el("p", { class: "answer", "data-field": task.headline, "data-value": String(value),
    text: headline })];
  const scalars = el("dl", { class: "fields" });
  const bars = [];
  for (const field of task.answer_fields) {
    const item = answer[field];
    if (field === task.headline || item === null || item === undefined) continue;
    if (typeof item !== "object") {
      scalars.append(el("div", {}, el("dt", { text: words(field) }),
        el("dd", { "data-field": field, "data-value": String(item), text: shown(item) })));
    } else if (Array.isArray(item)) {
      if (item.length) parts.push(rowsTable(field, item));
    } else if (Object.values(item).every((v) => typeof v === "number")) {
      bars.push(scoreBars(item, 6));
    } else {
      const pairs = el("dl", { class: "fields", "data-field": field, "aria-label": words(field) });
      for (const [key, entry] of Object.entries(item)) {
        pairs.append(el("div", {}, el("dt", { text: key }), el("dd", { "data-key": key, text: shown(entry) })));
      }
      parts.push(pairs);
    }
  }
  if (scalars.childElementCount) parts.push(scalars);
  parts.push(...bars, timings(answer));
  return parts;
}
