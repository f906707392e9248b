// The ragworks web page: plain JS against the /v1 API (no build step).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { key: localStorage.getItem("ragworks.key") || "", collection: "", citations: [], docCache: {} };

function authHeaders(extra = {}) {
  const h = { ...extra };
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

function showError(message) {
  const el = $("#error");
  el.textContent = message;
  el.hidden = !message;
}

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  const body = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || `${r.status} ${r.statusText}`);
  return body;
}

const enc = encodeURIComponent;
const colPath = (suffix = "") => `/v1/collections/${enc(state.collection)}${suffix}`;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

// --- collections ------------------------------------------------------------------------------------------

async function loadCollections(select) {
  const { collections } = await api("/v1/collections");
  const box = $("#collection");
  box.replaceChildren(...collections.map((c) => el("option", { value: c.name, textContent: `${c.name} (${c.documents} docs)` })));
  const want = select || state.collection || (collections[0] && collections[0].name) || "";
  if (want) box.value = want;
  state.collection = box.value;
  await refreshCollection();
}

async function refreshCollection() {
  if (!state.collection) {
    $("#documents").replaceChildren();
    $("#jobs").replaceChildren();
    return;
  }
  const [{ documents }, { jobs }] = await Promise.all([api(colPath("/documents?limit=200")), api(colPath("/jobs?limit=10"))]);
  $("#documents").replaceChildren(...documents.map((d) => {
    const del = el("button", { className: "secondary", textContent: "✕", title: "Delete this document" });
    del.onclick = async () => {
      try { await api(colPath(`/documents/${enc(d.id)}`), { method: "DELETE" }); await refreshCollection(); }
      catch (e) { showError(e.message); }
    };
    const name = el("span", { className: "citation-link", textContent: d.source, title: d.title || d.source });
    name.onclick = () => showDocument(d.id, null);
    return el("li", {}, name, el("span", { className: "muted", textContent: `${d.chunks} chunks ` }, del));
  }));
  $("#jobs").replaceChildren(...jobs.map((j) => el("li", {},
    el("span", { textContent: `${j.kind} · ${j.state}` }),
    el("span", { className: "muted", textContent: `${j.progress.files_done}/${j.progress.files_total} · ${j.progress.chunks_written} chunks` }))));
}

// --- upload and jobs --------------------------------------------------------------------------------------

function upload(files) {
  if (!state.collection) { showError("create or choose a collection first"); return; }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", colPath("/files"));
  if (state.key) xhr.setRequestHeader("Authorization", "Bearer " + state.key);
  const bar = $("#upload-progress");
  bar.value = 0;
  $("#upload-text").textContent = "uploading…";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      bar.value = e.loaded / e.total;
      $("#upload-text").textContent = `${Math.round((100 * e.loaded) / e.total)}%`;
    }
  };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 202 || xhr.status === 200) {
      bar.value = 1;
      $("#upload-text").textContent = "uploaded";
      watchJob(body.id);
    } else {
      $("#upload-text").textContent = "failed";
      showError((body.error && body.error.message) || `upload failed: ${xhr.status}`);
    }
  };
  xhr.onerror = () => showError("upload failed: network error");
  xhr.send(form);
}

async function watchJob(id) {
  const status = $("#job-status");
  const bar = $("#job-progress");
  for (;;) {
    let job;
    try { job = await api(`/v1/jobs/${enc(id)}`); } catch (e) { showError(e.message); return; }
    const p = job.progress;
    bar.value = p.files_total ? p.files_done / p.files_total : 0;
    let text = `${job.state} · ${p.files_done}/${p.files_total} files · ${p.chunks_written} chunks`;
    if (job.report && job.report.failed) text += ` · ${job.report.failed} failed`;
    if (job.error) text += ` · ${job.error}`;
    status.textContent = text;
    status.dataset.state = job.state;
    if (["completed", "failed", "cancelled"].includes(job.state)) {
      if (job.report && job.report.failures.length) showError(job.report.failures.map((f) => f.error).join("; "));
      await loadCollections(state.collection);
      return;
    }
    await new Promise((r) => setTimeout(r, 400));
  }
}

// --- ask (Server-Sent Events over fetch) -------------------------------------------------------------------

function parseEvent(raw) {
  let event = "message";
  const data = [];
  for (const line of raw.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
}

async function ask(question) {
  const answer = $("#answer");
  answer.textContent = "";
  answer.dataset.done = "false";
  $("#notice").textContent = "";
  $("#citations").replaceChildren();
  $("#sources").replaceChildren();
  const r = await fetch(colPath("/ask"), {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ question, stream: true }),
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || `${r.status} ${r.statusText}`);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let text = "";
  let verification = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const { event, data } = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (event === "sources") renderSources(data.sources);
      else if (event === "token") { text += data.text; answer.textContent = text; }
      else if (event === "verification") verification = data;
      else if (event === "done") renderAnswer(data, verification);
      else if (event === "error") showError(data.error.message);
    }
  }
}

function renderSources(sources) {
  $("#sources").replaceChildren(...sources.map((s) => {
    const li = el("li", { value: s.number },
      el("span", { className: "citation-link", textContent: s.source }),
      el("span", { className: "muted", textContent: ` · chars ${s.start}–${s.end}` }));
    li.onclick = () => showDocument(s.doc_id, { start: s.start, end: s.end });
    return li;
  }));
}

function renderAnswer(done, verification) {
  state.citations = done.citations;
  const answer = $("#answer");
  answer.replaceChildren();
  // Each [n] marker links to its citation: the k-th [n] in the text to the k-th citation numbered n.
  const seen = {};
  const appendWithLinks = (parent, text) => {
    let last = 0;
    for (const m of text.matchAll(/\[(\d+)\]/g)) {
      const n = Number(m[1]);
      const same = done.citations.filter((c) => c.number === n);
      parent.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (!same.length) { parent.append(m[0]); continue; }
      const citation = same[Math.min(seen[n] || 0, same.length - 1)];
      seen[n] = (seen[n] || 0) + 1;
      const link = el("a", { className: "cite", textContent: m[0], href: "#", title: citation.source });
      link.onclick = (e) => { e.preventDefault(); showDocument(citation.doc_id, citation); };
      parent.append(link);
    }
    parent.append(text.slice(last));
  };
  // Sentences no given source supports are highlighted (claim-level verification, the `verification` event).
  const sentences = ((verification && verification.sentences) || []).filter((s) => s.start >= 0);
  let pos = 0;
  for (const s of sentences) {
    appendWithLinks(answer, done.answer.slice(pos, s.start));
    const span = el("span", { className: "sentence" + (s.status === "unsupported" ? " unsupported" : "") });
    span.dataset.status = s.status;
    if (s.status === "unsupported") span.title = "no source given to the model supports this sentence";
    appendWithLinks(span, done.answer.slice(s.start, s.end));
    answer.append(span);
    pos = s.end;
  }
  appendWithLinks(answer, done.answer.slice(pos));
  answer.dataset.done = "true";
  $("#notice").textContent = done.notice || "";
  $("#citations").replaceChildren(...done.citations.map((c) => {
    const li = el("li", { value: c.number },
      el("span", { className: "citation-link", textContent: c.source + (c.page ? `, p. ${c.page}` : "") +
        (c.time_start != null ? `, ${clock(c.time_start)}–${clock(c.time_end)}` : "") }),
      el("div", { className: "quote", textContent: c.quote }));
    li.onclick = () => showDocument(c.doc_id, c);
    if (c.time_start != null) {
      const play = el("button", { type: "button", className: "play", textContent: "▶ play" });
      play.onclick = guard(async (e) => { e.stopPropagation(); await playClip(c, li, play); });
      li.append(play);
    }
    return li;
  }));
}

// Plays a cited stretch of a recording from its upload (fetched with the API key, so it works with auth on).
async function playClip(c, li, button) {
  const r = await fetch(colPath(`/media/${enc(c.doc_id)}`), { headers: authHeaders() });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || `${r.status} ${r.statusText}`);
  }
  const url = URL.createObjectURL(await r.blob());
  const player = el("audio", { controls: true, className: "clip", src: `${url}#t=${c.time_start},${c.time_end}` });
  button.replaceWith(player);
  await player.play().catch(() => {});  // a browser may refuse autoplay: the controls stay
}

// A position in a recording as mm:ss (h:mm:ss from an hour), as citations name it.
function clock(seconds) {
  const t = Math.max(0, Math.floor(seconds));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
}

// --- document viewer with the cited passage highlighted ------------------------------------------------------

async function showDocument(docId, span) {
  const doc = state.docCache[docId] || await api(colPath(`/documents/${enc(docId)}`));
  state.docCache[docId] = doc;
  $("#viewer").hidden = false;
  $("#doc-title").textContent = doc.title || doc.source;
  $("#doc-meta").textContent = `${doc.source} · ${doc.chunks} chunks` + (span ? ` · chars ${span.start}–${span.end}` : "");
  const pre = $("#doc-text");
  if (!span) { pre.replaceChildren(doc.text); pre.scrollTop = 0; return; }
  // Offsets count code points (Python); JS strings count UTF-16 units, which differ past the BMP.
  const cut = /[\uD800-\uDFFF]/.test(doc.text)
    ? (a, b) => Array.from(doc.text).slice(a, b).join("")
    : (a, b) => doc.text.slice(a, b);
  const mark = el("mark", { id: "highlight", textContent: cut(span.start, span.end) });
  pre.replaceChildren(cut(0, span.start), mark, cut(span.end));
  mark.scrollIntoView({ block: "center" });
}

// --- wiring -----------------------------------------------------------------------------------------------

async function start() {
  const info = await api("/v1/info");
  $("#server-info").textContent = `v${info.version} · ${info.embedding_model} · uploads up to ${info.max_upload_mb} MB` +
    (info.auth ? " · API key required" : "");
  $("#key-form").hidden = !info.auth;
  $("#api-key").value = state.key;
  if (!info.auth || state.key) await loadCollections();
}

function guard(fn) {
  return async (e) => {
    if (e) e.preventDefault();
    showError("");
    try { await fn(e); } catch (err) { showError(err.message); }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("#key-form").onsubmit = guard(async () => {
    state.key = $("#api-key").value.trim();
    localStorage.setItem("ragworks.key", state.key);
    state.docCache = {};
    await loadCollections();
  });
  $("#collection").onchange = guard(async () => { state.collection = $("#collection").value; state.docCache = {}; await refreshCollection(); });
  $("#refresh").onclick = guard(() => loadCollections());
  $("#create-form").onsubmit = guard(async () => {
    const name = $("#new-collection").value.trim();
    if (!name) return;
    await api("/v1/collections", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }) });
    $("#new-collection").value = "";
    await loadCollections(name);
  });
  $("#upload-form").onsubmit = guard(() => {
    const files = $("#files").files;
    if (files.length) upload(files);
  });
  $("#ask-form").onsubmit = guard(async () => {
    const q = $("#question").value.trim();
    if (!q) return;
    if (!state.collection) throw new Error("create or choose a collection first");
    $("#ask").disabled = true;
    try { await ask(q); } finally { $("#ask").disabled = false; }
  });
  guard(start)();
});
