// The transduce page: asks /v1/models for the language pairs, sends /v1/translate, shows
// the n-best list and draws the attention matrix on a <canvas>. No external assets.
"use strict";

const $ = (id) => document.getElementById(id);
let keyRequired = false;

async function loadModels() {
  try {
    const res = await fetch("/v1/models");
    const data = await res.json();
    keyRequired = data.api_key_required;
    $("key-label").hidden = !keyRequired;
    const select = $("model");
    select.replaceChildren();
    for (const m of data.models) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.source} \u2192 ${m.target}` + (m.name === `${m.source}-${m.target}` ? "" : ` (${m.name})`);
      option.dataset.target = m.target;
      select.append(option);
    }
    const first = data.models[0];
    if (first && first.decode) $("beam").value = first.decode.beam_size;
    setStatus(data.models.every((m) => m.ready) ? "" : "models are loading\u2026");
  } catch (err) {
    setStatus(`cannot reach the server: ${err}`, true);
  }
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function translate(event) {
  event.preventDefault();
  const text = $("source").value.trim();
  if (!text) return;
  const beam = Math.max(1, parseInt($("beam").value, 10) || 1);
  const nbest = Math.min(beam, Math.max(1, parseInt($("nbest").value, 10) || 1));
  const headers = { "Content-Type": "application/json" };
  if (keyRequired && $("apikey").value) headers["Authorization"] = `Bearer ${$("apikey").value}`;
  let glossary;
  try {
    glossary = readGlossary($("glossary").value);
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  // Several lines: one document (split into sentences by the server, layout kept), shown
  // without alternatives and attention; one line: one text, with both.
  const documentMode = text.includes("\n");
  const body = documentMode
    ? { texts: [text], model: $("model").value, beam_size: beam, document: true }
    : { texts: [text], model: $("model").value, beam_size: beam, n_best: nbest,
        return_attention: true };
  if (glossary.length) body.glossary = glossary;
  $("translate").disabled = true;
  setStatus("translating\u2026");
  const tick = performance.now();
  try {
    const res = await fetch("/v1/translate", { method: "POST", headers, body: JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) {
      const message = data.error && data.error.message ? data.error.message : res.statusText;
      setStatus(`error ${res.status}: ${message}`, true);
      return;
    }
    show(data.translations[0]);
    setStatus(`${Math.round(performance.now() - tick)} ms`);
  } catch (err) {
    setStatus(`request failed: ${err}`, true);
  } finally {
    $("translate").disabled = false;
  }
}

// "source = target" (or a TAB between them) per line; blank lines are skipped.
function readGlossary(value) {
  const pairs = [];
  value.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const cut = line.includes("\t") ? line.indexOf("\t") : line.indexOf("=");
    const source = cut < 0 ? "" : line.slice(0, cut).trim();
    const target = cut < 0 ? "" : line.slice(cut + 1).trim();
    if (!source || !target) throw new Error(`glossary line ${i + 1}: write "source term = target term"`);
    pairs.push([source, target]);
  });
  return pairs;
}

const LOW_CONFIDENCE = 0.5;

function show(t) {
  $("result").hidden = false;
  $("translation").textContent = t.text;
  $("translation").lang = $("model").selectedOptions[0]?.dataset.target || "";
  // Confidence: the geometric mean of the output tokens' probabilities (0-1).
  const low = t.confidence !== null && t.confidence < LOW_CONFIDENCE;
  $("translation").classList.toggle("low-confidence", low);
  $("confidence").textContent = t.confidence === null ? "" :
    `confidence ${(100 * t.confidence).toFixed(0)}%` +
    (low ? " \u2014 low: check this translation" : "") +
    (t.missing_terms && t.missing_terms.length
      ? ` \u2014 glossary terms not used: ${t.missing_terms.join(", ")}` : "");
  $("details").hidden = t.alternatives === undefined;  // a document: text only
  if ($("details").hidden) return;
  const list = $("alternatives");
  list.replaceChildren();
  for (const alt of t.alternatives) {
    const li = document.createElement("li");
    li.textContent = alt.text;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = alt.score === null ? "" : alt.score.toFixed(3);
    li.append(score);
    list.append(li);
  }
  drawHeatmap(t.src_tokens.concat(["</s>"]), t.tgt_tokens.concat(["</s>"]), t.attention || []);
}

// Rows are target tokens, columns source tokens; darker = more attention.
function drawHeatmap(src, tgt, weights) {
  const canvas = $("heatmap");
  const ctx = canvas.getContext("2d");
  const cell = 28, font = "13px system-ui, sans-serif";
  ctx.font = font;
  const widest = (tokens) => Math.max(0, ...tokens.map((s) => ctx.measureText(s).width));
  const left = Math.ceil(widest(tgt)) + 12, top = Math.ceil(widest(src) * 0.75) + 16;
  const width = left + cell * src.length + 8, height = top + cell * tgt.length + 8;
  const scale = window.devicePixelRatio || 1;
  canvas.width = width * scale;
  canvas.height = height * scale;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = font;
  ctx.fillStyle = "#1d2330";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  tgt.forEach((tok, i) => ctx.fillText(tok, left - 6, top + cell * i + cell / 2));
  src.forEach((tok, j) => {
    ctx.save();
    ctx.translate(left + cell * j + cell / 2, top - 6);
    ctx.rotate(-Math.PI / 4);
    ctx.textAlign = "left";
    ctx.fillText(tok, 0, 0);
    ctx.restore();
  });
  for (let i = 0; i < tgt.length; i++) {
    for (let j = 0; j < src.length; j++) {
      const w = Math.min(1, Math.max(0, (weights[i] || [])[j] || 0));
      const shade = Math.round(255 - 215 * Math.sqrt(w));
      ctx.fillStyle = `rgb(${shade}, ${Math.round(shade * 0.95 + 10)}, 255)`;
      ctx.fillRect(left + cell * j, top + cell * i, cell - 1, cell - 1);
    }
  }
  canvas.dataset.rows = tgt.length;
  canvas.dataset.cols = src.length;
  canvas.onmousemove = (e) => {
    const rect = canvas.getBoundingClientRect();
    const j = Math.floor((e.clientX - rect.left - left) / cell);
    const i = Math.floor((e.clientY - rect.top - top) / cell);
    const inside = i >= 0 && j >= 0 && i < tgt.length && j < src.length;
    $("cell").textContent = inside
      ? `${tgt[i]} \u2190 ${src[j]}: ${((weights[i] || [])[j] || 0).toFixed(2)}` : "";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", translate);
  $("source").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
  });
  loadModels();
});
