// hone dashboard: plain JavaScript over the service's OpenAI-shaped API; no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let selectedJob = null;

$("key").value = localStorage.getItem("hone-key") || "";
$("key").addEventListener("change", () => { localStorage.setItem("hone-key", $("key").value.trim()); refresh(); });

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${$("key").value.trim()}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error(body?.error?.message || `${response.status}`);
    error.body = body;
    throw error;
  }
  return body;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  return td;
}

const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");

async function refreshJobs() {
  const jobs = (await api("/v1/fine_tuning/jobs?limit=100")).data;
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    row.dataset.id = job.id;
    cell(row, job.id);
    cell(row, job.model.split("/").pop());
    cell(row, job.status).innerHTML = `<span class="badge ${job.status}">${job.status}</span>`;
    const p = job.progress || {};
    const bar = document.createElement("progress");
    bar.max = p.total_steps || 1;
    bar.value = job.status === "succeeded" ? bar.max : (p.step || 0);
    const td = cell(row, "");
    td.append(bar, ` ${p.step || 0}/${p.total_steps || "?"}`);
    cell(row, job.fine_tuned_model);
    cell(row, when(job.created_at));
    row.addEventListener("click", () => { selectedJob = job.id; refreshJob(); });
  }
  await refreshModels();
}

async function refreshModels() {
  const models = (await api("/v1/models")).data;
  const base = models.find((m) => !m.parent);
  $("base-model").textContent = base ? base.id : "";
  const tuned = models.filter((m) => m.parent).map((m) => m.id);
  const select = $("tuned-model");
  const current = select.value;
  if (tuned.join("\n") !== [...select.options].map((o) => o.value).join("\n")) {
    select.replaceChildren(...tuned.map((id) => new Option(id, id)));
  }
  if (current && tuned.includes(current)) select.value = current;
}

async function refreshJob() {
  if (!selectedJob) return;
  const [job, events, checkpoints] = await Promise.all([
    api(`/v1/fine_tuning/jobs/${selectedJob}`),
    api(`/v1/fine_tuning/jobs/${selectedJob}/events?limit=100`),
    api(`/v1/fine_tuning/jobs/${selectedJob}/checkpoints?limit=100`),
  ]);
  $("job-detail").hidden = false;
  $("job-id").textContent = job.id;
  $("job-status").textContent = job.status;
  $("job-status").className = `badge ${job.status}`;
  const p = job.progress || {};
  $("job-progress").textContent = `step ${p.step || 0} of ${p.total_steps || "?"}` +
    (job.trained_tokens ? `, ${job.trained_tokens} tokens` : "");
  $("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  $("job-results").textContent = job.results ? JSON.stringify(job.results, null, 2) : "";
  $("job-report").hidden = !job.report;
  $("job-report").dataset.url = job.report || "";
  $("pause").disabled = !["queued", "running"].includes(job.status);
  $("resume").disabled = job.status !== "paused";
  $("cancel").disabled = ["succeeded", "failed", "cancelled"].includes(job.status);
  $("events").replaceChildren(...events.data.map((e) => {
    const li = document.createElement("li");
    li.textContent = `${when(e.created_at)} [${e.level}] ${e.message}`;
    return li;
  }));
  const rows = $("checkpoints").tBodies[0];
  rows.replaceChildren();
  for (const c of checkpoints.data) {
    const row = rows.insertRow();
    cell(row, c.step_number);
    cell(row, c.metrics.train_loss?.toFixed(4));
    cell(row, c.metrics.valid_loss?.toFixed(4));
    cell(row, c.fine_tuned_model_checkpoint);
  }
  drawLoss(await allMetrics(job.id));
}

async function allMetrics(jobId) {
  const points = [];
  let after = null;
  for (let page = 0; page < 50; page++) {
    const query = `limit=100${after ? `&after=${after}` : ""}`;
    const events = await api(`/v1/fine_tuning/jobs/${jobId}/events?${query}`);
    points.push(...events.data.filter((e) => e.type === "metrics").map((e) => e.data));
    if (!events.has_more) break;
    after = events.last_id;
  }
  return points;
}

function drawLoss(points) {
  const svg = $("loss-curve");
  const train = points.filter((d) => d.train_loss !== undefined).sort((a, b) => a.step - b.step);
  const valid = points.filter((d) => d.valid_loss !== undefined).sort((a, b) => a.step - b.step);
  const all = [...train.map((d) => d.train_loss), ...valid.map((d) => d.valid_loss)];
  svg.replaceChildren();
  svg.dataset.points = String(train.length);
  if (!all.length) return;
  const [w, h, pad] = [640, 240, 30];
  const maxStep = Math.max(...train.map((d) => d.step), ...valid.map((d) => d.step), 1);
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (s) => pad + (s / maxStep) * (w - 2 * pad);
  const y = (v) => h - pad - ((v - lo) / (hi - lo || 1)) * (h - 2 * pad);
  const line = (data, key, color, id) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    el.setAttribute("points", data.map((d) => `${x(d.step)},${y(d[key])}`).join(" "));
    el.setAttribute("fill", "none");
    el.setAttribute("stroke", color);
    el.setAttribute("stroke-width", "2");
    el.id = id;
    svg.append(el);
  };
  const label = (text, tx, ty) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", "text");
    el.textContent = text;
    el.setAttribute("x", tx);
    el.setAttribute("y", ty);
    el.setAttribute("font-size", "11");
    svg.append(el);
  };
  line(train, "train_loss", "#2a6fb0", "train-line");
  if (valid.length) line(valid, "valid_loss", "#e07b00", "valid-line");
  label(hi.toFixed(3), 2, pad);
  label(lo.toFixed(3), 2, h - pad);
  label(`step ${maxStep}`, w - pad - 40, h - 8);
}

async function refreshFiles() {
  const files = (await api("/v1/files")).data;
  const body = $("files").tBodies[0];
  body.replaceChildren();
  for (const f of files) {
    const row = body.insertRow();
    cell(row, f.id);
    cell(row, f.filename);
    cell(row, f.bytes);
    cell(row, `${f.report?.valid ?? "?"} valid of ${f.report?.lines ?? "?"}`);
    cell(row, when(f.created_at));
    row.addEventListener("click", async () => {
      $("file-report").textContent = JSON.stringify(await api(`/v1/files/${f.id}/report`), null, 2);
    });
  }
}

async function refresh() {
  if (!$("key").value.trim()) { $("status").textContent = "enter an API key"; return; }
  try {
    await Promise.all([refreshJobs(), refreshFiles(), refreshJob()]);
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").textContent = error.message;
  }
}

function hyper(id) {
  const value = $(id).value.trim();
  return value === "" || value === "auto" ? "auto" : Number(value);
}

$("launch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("launch-result");
  out.textContent = "uploading...";
  try {
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", $("train-file").files[0]);
    const file = await api("/v1/files", { method: "POST", body: form });
    const request = {
      model: $("model").value.trim(), training_file: file.id,
      method: { type: "supervised", supervised: { hyperparameters: {
        n_epochs: hyper("n-epochs"), batch_size: hyper("batch-size"), learning_rate_multiplier: hyper("lr-mult") } } },
    };
    if ($("suffix").value.trim()) request.suffix = $("suffix").value.trim();
    if ($("hone").value.trim()) request.hone = JSON.parse($("hone").value);
    const job = await api("/v1/fine_tuning/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
    out.textContent = `launched ${job.id} on ${file.id}`;
    selectedJob = job.id;
    refresh();
  } catch (error) {
    out.textContent = error.message;
  }
});

for (const action of ["pause", "resume", "cancel"]) {
  $(action).addEventListener("click", async () => {
    try { await api(`/v1/fine_tuning/jobs/${selectedJob}/${action}`, { method: "POST" }); }
    catch (error) { $("job-error").textContent = error.message; }
    refresh();
  });
}

const EMPTY = "(an empty answer)";

async function chat(model, prompt) {
  const body = { model, messages: [{ role: "user", content: prompt }], max_tokens: 128, temperature: 0 };
  try {
    const answer = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const text = answer.choices[0].message.content;
    return text.trim() ? text : EMPTY;
  } catch (error) {
    return `error: ${error.message}`;
  }
}

$("job-report").addEventListener("click", async (event) => {
  event.preventDefault();  // the report needs the key, so fetch it and open it as a page of its own
  const page = await api(event.target.dataset.url);
  window.open(URL.createObjectURL(new Blob([page], { type: "text/html" })), "_blank");
});

$("send").addEventListener("click", async () => {
  const tuned = $("tuned-model").value;
  const prompt = $("prompt").value;
  $("playground").dataset.state = "asking";
  $("base-answer").textContent = $("tuned-answer").textContent = "...";
  const [base, mine] = await Promise.all([chat($("base-model").textContent, prompt), chat(tuned, prompt)]);
  $("base-answer").textContent = base;
  $("tuned-answer").textContent = mine;
  $("playground").dataset.state = "answered";
});

refresh();
setInterval(refresh, 2000);
