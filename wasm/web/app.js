// The demo page: checks WebGPU, loads the wasm runtime and the model (with
// a progress bar, cached in the Cache API by each file's ETag), and drives
// clustering and generation through the global `chameleon` object that the
// Go code installs (see wasm/main.go). Every failure ends up on the page.
"use strict";

// window.demo is the page's state; the browser test reads it.
const demo = window.demo = { ready: false, error: null, info: null, last: null, runs: [] };

const $ = (id) => document.getElementById(id);
const COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

// Sample prompts, one or two per domain of the project's corpus.
const SAMPLES = [
  // The six adaptation domains: the base model never saw them in pretraining;
  // the default hyper-network was trained on them (written for this project).
  ["python", "def list_files(root, suffix=\".py\"):\n    \"\"\"Return the sorted paths under root.\"\"\"\n    found = []\n    for dirpath, dirnames, filenames in os.walk(root):"],
  ["german", "Die Datei wird nur dann überschrieben, wenn die Option --force angegeben wurde. Andernfalls bricht das Programm"],
  ["elisp", "(defun my-count-words (start end)\n  \"Count the words between START and END.\"\n  (interactive \"r\")\n  (let ((count 0))"],
  ["licenses", "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated documentation files, to deal in the Software"],
  ["vimhelp", ":se[t] {option}?\tShow value of {option}.  See |:set-args|.\n\n:se[t] no{option}\tToggle option: Reset, switch it off."],
  ["speeches", "Fellow-Citizens of the Senate and House of Representatives:\n\nIn meeting you again I have the satisfaction of informing you that"],
  ["python", "class Cache(object):\n    def __init__(self, size=128):\n        self.size = size\n        self._data = {}\n\n    def get(self, key, default=None):"],
  ["german", "Das Leben ist wie eine Schachtel Pralinen: man weiß nie, wann man"],
];

function fatal(msg) {
  demo.error = msg;
  const el = $("fatal");
  el.textContent = msg;
  el.hidden = false;
  $("loading").hidden = true;
}

function showError(msg) {
  demo.error = msg;
  const el = $("error");
  el.textContent = msg;
  el.hidden = false;
  if (!demo.ready) fatal(msg);
}

// clearResults empties what a previous run left on the page (outputs,
// statistics, the cluster plot and the prompts' colours), so that after a
// failure nothing stale is shown as if it were this run's result.
function clearResults() {
  $("outputs").innerHTML = "";
  $("stats").textContent = "";
  const cv = $("scatter");
  cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
  $("cluster-note").textContent = "";
  $("scatter-legend").innerHTML = "";
  $("scatter-axes").textContent = "";
  $("ppl-table").innerHTML = "";
  $("ppl-panel").hidden = true;
  demo.scores = null;
  demo.plotted = null;
  document.querySelectorAll("#prompts .dot").forEach((d) => { d.style.background = ""; });
}

function clearError() {
  $("error").hidden = true;
  demo.error = null;
}

window.addEventListener("resize", () => { if (demo.plotted) drawClusters(demo.plotted.plan, demo.plotted.texts); });
window.addEventListener("error", (e) => showError("Error: " + (e.message || e)));
window.addEventListener("unhandledrejection", (e) => showError("Error: " + ((e.reason && e.reason.message) || e.reason)));

function progress(label, done, total, detail) {
  $("load-label").textContent = label;
  const bar = $("load-bar");
  if (total > 0) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
  $("load-detail").textContent = detail || "";
}

async function checkWebGPU() {
  if (!navigator.gpu) {
    throw new Error("This browser has no WebGPU (navigator.gpu is missing), so the model cannot run here. " +
      "Use a recent Chrome or Edge (or Safari 26, Firefox 141 on Windows), and open the page over http://localhost or https.");
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    throw new Error("This browser has WebGPU but offers no GPU adapter (the GPU may be blocklisted or WebGPU disabled; see chrome://gpu).");
  }
  const i = adapter.info || {};
  $("gpu").textContent = "WebGPU: " + ([i.vendor, i.architecture, i.description].filter(Boolean).join(" · ") || "adapter available");
}

async function startWasm() {
  const go = new Go();
  const ready = new Promise((res) => { window.onChameleonReady = res; });
  progress("Loading the runtime (chameleon.wasm)…", 0, 0);
  const { bytes } = await fetchBytes("chameleon.wasm", "the runtime chameleon.wasm", -1, () => {});
  let result;
  try { result = await WebAssembly.instantiate(bytes, go.importObject); } catch (e) { throw new Error("The runtime chameleon.wasm is corrupt: " + e.message); }
  window.wasm = result; // cogentcore/webgpu reads the module's memory through this global
  go.run(result.instance).then(() => showError("The runtime exited unexpectedly."));
  await ready;
}

async function loadModel() {
  let man;
  try {
    const r = await fetch("model/manifest.json");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    man = await r.json();
  } catch (e) { throw new Error("Could not read the model's file list (model/manifest.json): " + e.message); }
  if (chameleon.pageVersion !== man.page) {
    throw new Error(`The runtime chameleon.wasm was built for another version of this page (runtime ${chameleon.pageVersion || "without a version"}, ` +
      `page ${man.page}): rebuild it with \`make wasm\` (or \`make demo\`), restart chameleon demo and reload.`);
  }
  const total = man.files.reduce((s, f) => s + f.size, 0);
  let done = 0, cachedAll = true;
  const files = {};
  for (const f of man.files) {
    const got = await fetchBytes("model/" + f.name, f.name, f.size, (n) => {
      done += n;
      progress(`Downloading ${man.label}…`, done, total, `${f.name}: ${mib(done)} of ${mib(total)}`);
    }, `model/${f.name}?v=${encodeURIComponent(f.etag)}`, f.etag);
    cachedAll = cachedAll && got.cached;
    files[f.role] = got.bytes;
  }
  progress("Uploading the weights to the GPU…", total, total, cachedAll ? "(model read from the browser's cache)" : "");
  let info;
  try {
    info = await chameleon.load({ config: files.config, weights: files.weights, encoder: files.encoder, vocab: files.vocab, hyper: files.hyper, dtype: man.dtype || "f16" });
  } catch (e) { throw new Error("Could not load the model: " + e.message); }
  info.label = man.label;
  info.cached = cachedAll;
  return info;
}

function addPrompt(text) {
  const div = document.createElement("div");
  div.className = "prompt";
  div.innerHTML = '<span class="dot"></span><textarea rows="2"></textarea><button class="remove" type="button" title="remove">×</button>';
  div.querySelector("textarea").value = text || "";
  div.querySelector(".remove").onclick = () => { if ($("prompts").children.length > 1) div.remove(); };
  $("prompts").appendChild(div);
  return div;
}

function prompts() {
  return [...document.querySelectorAll("#prompts textarea")].map((t) => t.value).filter((s) => s.trim() !== "");
}

function options(adapted) {
  return {
    prompts: prompts(),
    maxTokens: +$("max-tokens").value,
    temperature: +$("temperature").value,
    topK: +$("top-k").value,
    seed: +$("seed").value,
    k: +$("clusters").value,
    adapt: adapted,
    cache: adapted && $("cache").checked,
  };
}

// setBusy disables the run buttons while a run goes, and locks the prompt
// boxes (and the buttons that add, fill or remove them), so that what the
// page shows stays the prompts the run was given. Stop is enabled by
// generate alone, for the time of its run.
function setBusy(b) {
  demo.busy = b;
  $("stop").disabled = true;
  for (const id of ["gen-base", "gen-both", "do-cluster", "add-prompt"]) $(id).disabled = b;
  document.querySelectorAll("#prompts textarea").forEach((t) => { t.readOnly = b; });
  document.querySelectorAll("#prompts .remove, #samples button").forEach((e) => { e.disabled = b; });
  if (!demo.info || !demo.info.adapter) { $("gen-both").disabled = true; $("do-cluster").disabled = true; }
}

// colorOf is a cluster's colour; grey for -1, a prompt the adapter's gate
// keeps at the base model. Clusters are numbered from 1 on the page (the
// runtime's ids are 0-based), as prompts are.
const colorOf = (c) => (c < 0 ? "#9aa0a6" : COLORS[c % COLORS.length]);
const clusterName = (c) => (c < 0 ? "base (gate)" : "cluster " + (c + 1));

// FEATURES names what each adapter feature is, for the plot's axes.
const FEATURES = {
  "embed": "mean token embedding of the prompt",
  "hidden": "mean final hidden state of the base model over the prompt",
  "embed+hidden": "mean token embedding and mean final hidden state, concatenated",
};

// membersOf lists the prompts (1-based) of each cluster id in assign.
function membersOf(assign) {
  const m = new Map();
  assign.forEach((c, i) => { if (!m.has(c)) m.set(c, []); m.get(c).push(i + 1); });
  return [...m.entries()].sort((a, b) => (a[0] < 0) - (b[0] < 0) || a[0] - b[0]);
}

// drawClusters plots each prompt at the first two principal components of
// its feature (the vector the clustering sees), coloured by cluster, with
// axes, ticks and a legend; the canvas takes the panel's width.
function drawClusters(plan, texts) {
  demo.plotted = { plan, texts }; // redrawn at the new width when the window is resized
  const cv = $("scatter"), ctx = cv.getContext("2d");
  const width = Math.max(240, Math.min(760, cv.parentElement.clientWidth || 760));
  cv.width = width;
  cv.height = width < 500 ? 240 : 300;
  ctx.clearRect(0, 0, cv.width, cv.height);
  const pts = plan.points;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const narrow = width < 500;
  const L = 46, R = narrow ? 24 : 200, T = 12, B = 38; // room for the axes, and for labels on the right
  const sx = (x) => L + 10 + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (cv.width - L - R - 20);
  const sy = (y) => cv.height - B - 10 - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (cv.height - T - B - 20);
  // Axes with ticks at the smallest, middle and largest value.
  ctx.strokeStyle = "#5b6472"; ctx.fillStyle = "#5b6472"; ctx.lineWidth = 1; ctx.font = "11px sans-serif";
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, cv.height - B); ctx.lineTo(cv.width - R + 10, cv.height - B); ctx.stroke();
  const tick = (v) => (Math.abs(v) < 1e-9 ? "0" : v.toPrecision(2));
  for (const v of [x0, (x0 + x1) / 2, x1]) {
    const x = sx(v);
    ctx.beginPath(); ctx.moveTo(x, cv.height - B); ctx.lineTo(x, cv.height - B + 4); ctx.stroke();
    ctx.textAlign = "center"; ctx.fillText(tick(v), x, cv.height - B + 15);
  }
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    const y = sy(v);
    ctx.beginPath(); ctx.moveTo(L - 4, y); ctx.lineTo(L, y); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(tick(v), L - 6, y + 4);
  }
  ctx.textAlign = "center"; ctx.font = "12px sans-serif";
  ctx.fillText("PC 1", L + (cv.width - L - R) / 2, cv.height - 6);
  ctx.save(); ctx.translate(12, T + (cv.height - T - B) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("PC 2", 0, 0); ctx.restore();
  ctx.textAlign = "left";
  pts.forEach((p, i) => {
    ctx.fillStyle = colorOf(plan.assign[i]);
    ctx.beginPath(); ctx.arc(sx(p[0]), sy(p[1]), 7, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#1d2330";
    const label = narrow ? String(i + 1) : String(i + 1) + " " + texts[i].slice(0, 22).replace(/\s+/g, " ");
    ctx.fillText(label, sx(p[0]) + 9, sy(p[1]) + 4);
  });
  const legend = $("scatter-legend");
  legend.innerHTML = "";
  for (const [c, ms] of membersOf(plan.assign)) {
    const item = document.createElement("span");
    item.className = "item";
    item.dataset.cluster = String(c < 0 ? 0 : c + 1);
    item.innerHTML = '<span class="swatch"></span><span class="name"></span>';
    item.querySelector(".swatch").style.background = colorOf(c);
    item.querySelector(".name").textContent = `${clusterName(c)}: prompt${ms.length === 1 ? "" : "s"} ${ms.join(", ")}`;
    legend.appendChild(item);
  }
  const a = demo.info && demo.info.adapter;
  const feat = (a && FEATURES[a.features]) || "the prompt's feature";
  $("scatter-axes").textContent = `Axes: PC 1 and PC 2 are the first two principal components of the prompts' features ` +
    `(${feat}, L2-normalised), the vectors k-means groups; distances in this plane approximate theirs.`;
  const kept = plan.assign.filter((c) => c < 0).length;
  $("cluster-note").textContent = `${plan.k} cluster${plan.k === 1 ? "" : "s"} of ${pts.length} prompts` +
    (kept ? `; ${kept} kept at the base model by the gate (grey)` : "");
  document.querySelectorAll("#prompts .prompt").forEach((div) => { div.querySelector(".dot").style.background = "#ccc"; });
  const divs = [...document.querySelectorAll("#prompts .prompt")].filter((d) => d.querySelector("textarea").value.trim() !== "");
  divs.forEach((d, i) => { d.querySelector(".dot").style.background = colorOf(plan.assign[i]); });
  if (plan.scores) drawScores(plan);
}

const ppl = (nll, n) => (n > 0 ? Math.exp(nll / n) : NaN);
const fmt2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : "–");
const pct = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && a > 0 ? ((b - a) / a * 100 >= 0 ? "+" : "") + ((b - a) / a * 100).toFixed(1) + "%" : "–");

// drawScores fills the perplexity table: each prompt's own text with the
// base model and with its cluster's update, then pooled per cluster and
// over all prompts. demo.scores keeps the numbers for the browser test.
function drawScores(plan) {
  const sc = plan.scores;
  const rows = [];
  const row = (cells, cls, key) => {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    if (key) tr.dataset.row = key;
    cells.forEach((c, j) => {
      const td = document.createElement(cls === "head" ? "th" : "td");
      td.textContent = c;
      if (j === 5 && c.startsWith("-")) td.className = "better";
      if (j === 5 && c.startsWith("+") && c !== "+0.0%") td.className = "worse";
      tr.appendChild(td);
    });
    rows.push(tr);
  };
  const table = { prompts: [], clusters: [] };
  row(["", "cluster", "tokens", "base", "adapted", "change"], "head");
  sc.forEach((s, i) => {
    const b = ppl(s.base, s.tokens), a = ppl(s.adapted, s.tokens);
    table.prompts.push({ prompt: i + 1, cluster: plan.assign[i] < 0 ? 0 : plan.assign[i] + 1, tokens: s.tokens, base: b, adapted: a });
    row([`prompt ${i + 1}`, plan.assign[i] < 0 ? "base" : String(plan.assign[i] + 1), String(s.tokens), fmt2(b), fmt2(a), pct(b, a)], "", "prompt-" + (i + 1));
  });
  let first = true;
  const pool = (idx) => idx.reduce((p, i) => ({ n: p.n + sc[i].tokens, b: p.b + sc[i].base, a: p.a + sc[i].adapted }), { n: 0, b: 0, a: 0 });
  for (const [c, ms] of membersOf(plan.assign)) {
    const p = pool(ms.map((m) => m - 1));
    const b = ppl(p.b, p.n), a = ppl(p.a, p.n);
    table.clusters.push({ cluster: c < 0 ? 0 : c + 1, prompts: ms, tokens: p.n, base: b, adapted: a });
    row([`${clusterName(c)} (${ms.join(", ")})`, "", String(p.n), fmt2(b), fmt2(a), pct(b, a)], first ? "sep" : "", "cluster-" + (c < 0 ? 0 : c + 1));
    first = false;
  }
  const all = pool(sc.map((_, i) => i));
  table.all = { tokens: all.n, base: ppl(all.b, all.n), adapted: ppl(all.a, all.n) };
  row(["all prompts", "", String(all.n), fmt2(table.all.base), fmt2(table.all.adapted), pct(table.all.base, table.all.adapted)], "sep", "all");
  const t = $("ppl-table");
  t.innerHTML = "";
  rows.forEach((r) => t.appendChild(r));
  $("ppl-panel").hidden = false;
  demo.scores = table;
}

// highlight shows each continuation token by token, marking in the
// adapted column the tokens that differ from the base run's token at the
// same position.
function highlight(cells, base, adapted) {
  let marked = 0;
  adapted.results.forEach((r, i) => {
    const bt = base.results[i].tokens, el = cells[i].adapted;
    el.textContent = "";
    r.pieces.forEach((piece, j) => {
      if (r.tokens[j] !== bt[j]) {
        const m = document.createElement("mark");
        m.className = "diff";
        m.title = "differs from the base model's token here";
        m.textContent = piece;
        el.appendChild(m);
        marked++;
      } else {
        el.appendChild(document.createTextNode(piece));
      }
    });
  });
  return marked;
}

// outputs builds one row per prompt with a column per run.
function outputs(texts, cols) {
  const root = $("outputs");
  root.innerHTML = "";
  return texts.map((t, i) => {
    const row = document.createElement("div");
    row.className = "out";
    const colEls = {};
    row.innerHTML = `<div class="cols"></div>`;
    for (const c of cols) {
      const col = document.createElement("div");
      col.className = "col";
      col.innerHTML = `<h3></h3><pre><span class="p"></span><span class="gen"></span></pre>`;
      col.querySelector("h3").textContent = `${i + 1}. ${c}`;
      col.querySelector(".p").textContent = t;
      row.querySelector(".cols").appendChild(col);
      colEls[c] = col.querySelector(".gen");
    }
    root.appendChild(row);
    return colEls;
  });
}

// run is one generation on the options o of the click (the same for both
// halves of "with and without adaptation", whatever is edited meanwhile).
async function run(o, cells, col) {
  const t0 = performance.now();
  let n = 0;
  const res = await chameleon.generate(o, (seq, text) => {
    n++;
    cells[seq][col].textContent += text;
    const s = (performance.now() - t0) / 1000;
    $("stats").textContent = `${col}: ${n} pieces in ${s.toFixed(1)} s`;
  });
  res.label = col;
  if (res.plan) drawClusters(res.plan, o.prompts);
  res.results.forEach((r, i) => {
    cells[i][col].textContent = r.text;
    if (r.finish === "cancelled") cells[i][col].insertAdjacentHTML("afterend", '<span class="stopped"> [stopped]</span>');
  });
  demo.runs.push(res);
  return res;
}

// adapterKind names the adapter's kind for the page.
function adapterKind(a) {
  return a.basis ? "gated basis (a static pair weighed per cluster by the hyper-network)" : "hyper-network";
}

function statLine(res) {
  let s = `${res.label}: ${res.tokens} tokens in ${res.seconds.toFixed(2)} s = ${res.tokensPerSec.toFixed(1)} tokens/s`;
  if (res.adapted) {
    const a = demo.info.adapter;
    s += ` (${adapterKind(a)}, rank ${a.rank}, alpha ${a.alpha}, ${res.plan.k} cluster${res.plan.k === 1 ? "" : "s"}: ` +
      res.plan.assign.map((c, i) => `prompt ${i + 1}→${c < 0 ? "base" : c + 1}`).join(", ") + ")";
    if (res.cache) {
      s += "; token cache: " + res.cache.pool.map((g, i) =>
        `prompt ${i + 1} pool ${g + 1} (own ${res.cache.own[i].toFixed(2)}, pool ${res.cache.poolWeight[i].toFixed(2)})`).join(", ");
    }
  }
  return s;
}

async function generate(both) {
  if (demo.busy) return;
  clearError();
  const base = options(false), texts = base.prompts, cacheOn = $("cache").checked;
  if (texts.length === 0) { clearResults(); showError("Enter at least one prompt."); return; }
  setBusy(true);
  demo.last = null;
  demo.stopped = false;
  $("stop").disabled = false;
  try {
    const cols = both ? ["base", "adapted"] : ["base"];
    const cells = outputs(texts, cols);
    const runs = [await run(base, cells, "base")];
    if (both && !demo.stopped) runs.push(await run({ ...base, adapt: true, cache: cacheOn }, cells, "adapted"));
    const stopped = demo.stopped || runs.some((r) => r.results.some((x) => x.finish === "cancelled"));
    $("stats").textContent = runs.map(statLine).join(" · ") + (stopped ? " · stopped (Stop was clicked)" : "");
    const marked = runs.length > 1 ? highlight(cells, runs[0], runs[1]) : 0;
    demo.last = { done: true, runs, marked, stopped };
  } catch (e) {
    clearResults();
    showError(e.message);
    demo.last = { done: true, error: e.message };
  } finally {
    setBusy(false);
  }
}

async function cluster() {
  if (demo.busy) return;
  clearError();
  setBusy(true);
  demo.lastCluster = null;
  try {
    const o = options(true);
    const plan = await chameleon.cluster(o);
    drawClusters(plan, o.prompts);
    demo.lastCluster = { done: true, plan };
  } catch (e) {
    clearResults();
    showError(e.message);
    demo.lastCluster = { done: true, error: e.message };
  } finally {
    setBusy(false);
  }
}

function showApp(info) {
  $("loading").hidden = true;
  $("app").hidden = false;
  const a = info.adapter;
  $("model-info").textContent = `${info.label}: ${info.layers} layers, width ${info.embd}, ${info.heads} heads, context ${info.context}, ` +
    `vocabulary ${info.vocab}, ${(info.params / 1e6).toFixed(1)}M parameters (${info.dtype} on the GPU)` +
    (info.cached ? ", read from the browser's cache" : "") + ". " +
    (a ? `Adapter: ${adapterKind(a)} (hidden ${a.hidden.join("-")}, rank ${a.rank}, alpha ${a.alpha}${a.centroids ? ", " + a.centroids + " training centroids" : ""}).`
       : "No adapter loaded: generation without adaptation only (start the demo with --adapter FILE).");
  $("compile").textContent = `Shader compilation: ${info.warmupSeconds.toFixed(2)} s, in a warm-up run at load time ` +
    `(every kernel the page uses, compiled by the browser); the tokens/s below are generation alone.` +
    (a ? " Adapted tokens that differ from the base model's at the same position are highlighted." : "");
  for (const [dom, text] of SAMPLES) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = dom + ": " + text.split("\n")[0].slice(0, 24) + "…";
    b.onclick = () => {
      const empty = [...document.querySelectorAll("#prompts textarea")].find((t) => t.value.trim() === "");
      (empty || addPrompt().querySelector("textarea")).value = text;
    };
    $("samples").appendChild(b);
  }
  for (const [, text] of SAMPLES.slice(0, 4)) addPrompt(text);
  $("add-prompt").onclick = () => addPrompt("");
  $("gen-base").onclick = () => generate(false);
  $("gen-both").onclick = () => generate(true);
  $("do-cluster").onclick = () => cluster();
  $("stop").onclick = () => { demo.stopped = true; $("stop").disabled = true; chameleon.stop(); };
  setBusy(false);
}

(async () => {
  try {
    await checkWebGPU();
    await startWasm();
    const info = await loadModel();
    demo.info = info;
    showApp(info);
    demo.ready = true;
  } catch (e) {
    fatal(e.message);
  }
})();
