// The CluPy dashboard: polls /api/dashboard once a second and draws what it says. Plain DOM and
// SVG; everything shown is set as text, never as markup.
"use strict";

const SERIES = [
  { key: "submitted", label: "submitted/s", color: "#2456c7", rate: true },
  { key: "completed", label: "completed/s", color: "#1a7f37", rate: true },
  { key: "failed", label: "failed/s", color: "#c62828", rate: true },
  { key: "running", label: "running", color: "#8e44ad", rate: false },
  { key: "queued", label: "queued", color: "#b35900", rate: false },
];
const MAX_SAMPLES = 3600;

let samples = [];  // [time_ms, interval_ms, submitted, completed, failed, running, queued]
let lastSampleMs = 0;
let minutes = 5;
let selectedFailure = null;  // "job.task"

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fillTable(id, rows, columns, emptyText) {
  const body = document.querySelector("#" + id + " tbody");
  const fresh = document.createElement("tbody");
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", emptyText, "empty");
    td.colSpan = columns;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) tr.appendChild(cell);
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
  return fresh;
}

function cell(text, className) { return el("td", text, className); }
function num(value, digits) {
  const text = typeof value === "number" && digits !== undefined ? value.toFixed(digits) : value;
  return el("td", text, "num");
}

function ago(ms, now) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h ago";
}

function clock(ms) { return new Date(ms).toLocaleTimeString(); }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function setText(id, text) { document.getElementById(id).textContent = String(text); }

function drawServers(servers, now) {
  let busy = 0, slots = 0;
  const rows = servers.map((s) => {
    busy += s.busy_slots; slots += s.capacity;
    const labels = el("td");
    for (const [k, v] of Object.entries(s.labels || {})) labels.appendChild(el("span", k + "=" + v, "tag"));
    const deps = s.dependencies ? s.dependencies.state + (s.dependencies.summary ? ": " + s.dependencies.summary : "") : "–";
    return [cell(s.server_id), cell(s.hostname + (s.pid ? " (pid " + s.pid + ")" : "")),
            cell(s.state, "state-" + s.state), cell(s.busy_slots + " / " + s.capacity), labels,
            cell(s.version), cell(ago(s.last_heartbeat_ms, now)), cell(s.reserved_by || "–"),
            cell(deps)];
  });
  fillTable("servers", rows, 9, "no server has registered");
  setText("total-servers", servers.length);
  setText("total-slots", busy + " / " + slots);
}

function drawFunctions(functions) {
  functions.sort((a, b) => (b.completed + b.failed) - (a.completed + a.failed));
  fillTable("functions", functions.map((f) => [
    cell(f.function), num(f.completed), num(f.failed), num(f.mean_ms, 2), num(f.p99_ms, 2),
  ]), 5, "no task has finished yet");
}

function drawClients(clients) {
  fillTable("clients", clients.map((c) => [
    cell(c.job_id), cell(c.program), cell(c.client), num(c.completed), num(c.failed),
    num(c.outstanding), cell(c.reserved.length ? c.reserved.join(", ") : "–"),
  ]), 7, "no client has a job open");
}

function drawFailures(failures) {
  const body = fillTable("failures", failures.map((f) => [
    cell(clock(f.time_ms)), cell(f.job_id + "." + f.task_id), cell(f.function),
    cell(f.server || "–"), cell(f.kind), cell(f.type_name || "–"), cell(f.message, "message"),
  ]), 7, "no task has failed");
  failures.forEach((f, i) => {
    const row = body.rows[i];
    const id = f.job_id + "." + f.task_id;
    row.dataset.task = id;
    if (id === selectedFailure) row.classList.add("selected");
    row.addEventListener("click", () => showOutput(f.job_id, f.task_id));
  });
}

async function showOutput(job, task) {
  selectedFailure = job + "." + task;
  for (const row of document.querySelectorAll("#failures tbody tr"))
    row.classList.toggle("selected", row.dataset.task === selectedFailure);
  const panel = document.getElementById("output-panel");
  const pre = document.getElementById("output-text");
  setText("output-title", "output of task " + selectedFailure + " (clupy logs " + selectedFailure + ")");
  pre.replaceChildren();
  panel.hidden = false;
  const response = await fetch("/api/output?job=" + job + "&task=" + task, { credentials: "same-origin" });
  if (response.status === 404) { pre.textContent = "(no output is kept for this task)"; return; }
  if (!response.ok) { pre.textContent = "(could not read the output: HTTP " + response.status + ")"; return; }
  const output = await response.json();
  if (output.truncated) pre.appendChild(el("span", "… earlier lines were dropped\n"));
  for (const line of output.lines) pre.appendChild(el("span", line.text + "\n", line.stderr ? "stderr" : ""));
  if (output.lines.length === 0) pre.textContent = "(the task printed nothing)";
}

function drawServices(services) {
  fillTable("services", services.map((s) => [
    cell(s.name), cell(s.state), num(s.version), num(s.replicas), cell(s.url),
    num(s.requests_per_s, 1), num(s.errors), num(s.p99_ms, 2),
  ]), 8, "no service is published");
}

function drawStore(store, output) {
  const facts = document.getElementById("store");
  facts.replaceChildren();
  const add = (k, v) => { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", v)); };
  if (!store) {
    add("store", "not configured (the master's store: section)");
  } else {
    add("files", store.files);
    add("bytes", bytes(store.bytes));
    add("Redis", store.reachable ? "reachable" : "unreachable");
    add("janitor sweeps", store.sweeps + " (" + store.sweep_failures + " failed)");
    const removed = Object.entries(store.files_removed || {}).map(([k, v]) => k + ": " + v).join(", ");
    add("files removed", removed || "none");
  }
  add("task output kept", output.tasks + " task(s), " + bytes(output.bytes));
}

function drawChart() {
  const box = document.getElementById("chart");
  const width = box.clientWidth || 800, height = box.clientHeight || 220;
  const left = 44, right = 8, top = 8, bottom = 20;
  const now = samples.length ? samples[samples.length - 1][0] : Date.now();
  const from = now - minutes * 60000;
  const shown = samples.filter((s) => s[0] >= from);
  const value = (s, series, index) => series.rate ? s[index] * 1000 / Math.max(1, s[1]) : s[index];
  let max = 1;
  for (const s of shown) SERIES.forEach((series, i) => { max = Math.max(max, value(s, series, i + 2)); });
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  const x = (t) => left + (t - from) / (now - from || 1) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  for (let i = 0; i <= 4; ++i) {
    const v = max * i / 4;
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", left); line.setAttribute("x2", width - right);
    line.setAttribute("y1", y(v)); line.setAttribute("y2", y(v));
    line.setAttribute("class", "grid");
    svg.appendChild(line);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y(v) + 4);
    label.setAttribute("class", "axis");
    label.textContent = v >= 100 ? Math.round(v) : v.toFixed(1);
    svg.appendChild(label);
  }
  for (const [t, anchor] of [[from, "start"], [now, "end"]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x(t)); label.setAttribute("y", height - 4);
    label.setAttribute("text-anchor", anchor); label.setAttribute("class", "axis");
    label.textContent = clock(t);
    svg.appendChild(label);
  }
  SERIES.forEach((series, i) => {
    let d = "", previous = null;
    for (const s of shown) {
      // A gap (the master was down) breaks the line.
      const jump = previous === null || s[0] - previous > 3 * Math.max(1000, s[1]);
      d += (jump ? "M" : "L") + x(s[0]).toFixed(1) + "," + y(value(s, series, i + 2)).toFixed(1);
      previous = s[0];
    }
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d || "M0,0");
    path.setAttribute("stroke", series.color);
    path.dataset.series = series.key;
    svg.appendChild(path);
  });
  box.replaceChildren(svg);
}

function drawLegend() {
  const legend = document.getElementById("legend");
  for (const series of SERIES) {
    const item = el("span", series.label);
    item.style.setProperty("--swatch", series.color);
    legend.appendChild(item);
  }
}

async function poll() {
  let data;
  try {
    const response = await fetch("/api/dashboard?since=" + lastSampleMs, { credentials: "same-origin" });
    if (response.status === 401) { window.location.assign("/login"); return; }
    if (!response.ok) throw new Error("HTTP " + response.status);
    data = await response.json();
  } catch (e) {
    const live = document.getElementById("live");
    live.className = "live down";
    live.textContent = "master unreachable, retrying";
    setTimeout(poll, 2000);
    return;
  }
  const live = document.getElementById("live");
  live.className = "live ok";
  live.textContent = "live, " + clock(data.master.now_ms);
  setText("master-info", "master " + data.master.version + ", up since " + clock(data.master.started_ms));
  const totals = data.totals;
  setText("total-queued", totals.queued);
  setText("total-running", totals.running);
  setText("total-clients", totals.clients);
  setText("total-submitted", totals.submitted);
  setText("total-completed", data.tasks.completed_total);
  setText("total-failed", data.tasks.failed_total);
  for (const s of data.tasks.samples) {
    if (s[0] > lastSampleMs) { samples.push(s); lastSampleMs = s[0]; }
  }
  if (samples.length > MAX_SAMPLES) samples = samples.slice(samples.length - MAX_SAMPLES);
  drawServers(data.servers, data.master.now_ms);
  drawFunctions(data.tasks.functions);
  drawClients(data.clients);
  drawFailures(data.tasks.failures);
  drawServices(data.services);
  drawStore(data.store, { tasks: data.tasks.output_tasks, bytes: data.tasks.output_bytes });
  drawChart();
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  drawLegend();
  for (const button of document.querySelectorAll("#range button")) {
    button.addEventListener("click", () => {
      minutes = Number(button.dataset.minutes);
      for (const b of document.querySelectorAll("#range button")) b.classList.toggle("on", b === button);
      drawChart();
    });
  }
  document.getElementById("output-close").addEventListener("click", () => {
    document.getElementById("output-panel").hidden = true;
    selectedFailure = null;
    for (const row of document.querySelectorAll("#failures tbody tr")) row.classList.remove("selected");
  });
  window.addEventListener("resize", drawChart);
  poll();
});
