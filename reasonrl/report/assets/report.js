// reasonrl run report: draws the curves (inline SVG) and the trace browser from the JSON embedded in the page.
// All run text goes in with textContent, never as markup. When everything is drawn, <body> gets
// data-rendered="ok" with data-charts and data-rows counts; an uncaught error sets data-error (the tests read both).
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const W = 460, H = 220, ML = 50, MR = 12, MT = 10, MB = 26;
  const PAGE = 50;

  // ---------- curves
  function niceTicks(lo, hi, count) {
    const span = hi - lo, raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => span / s <= count) || 10 * mag;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
    return ticks;
  }
  function smooth(points, weight) {
    if (!(weight > 0) || points.length < 3) return points;
    let last = 0, n = 0;
    return points.map(([s, v]) => {
      if (v === null) return [s, null];
      last = last * weight + (1 - weight) * v; n += 1;
      return [s, last / (1 - Math.pow(weight, n))];  // debiased, so the first points are not pulled to 0
    });
  }
  function pathOf(points, x, y) {
    let d = "", pen = false;
    for (const [s, v] of points) {
      if (v === null) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(s).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    }
    return d;
  }
  function domain(values, fromZero) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!values.length) { lo = 0; hi = 1; }
    if (fromZero && lo >= 0 && lo < 0.5 * hi) lo = 0;
    if (lo === hi) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
    return [lo, hi];
  }
  function nearest(points, step) {
    let lo = 0, hi = points.length - 1;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (points[mid][0] < step) lo = mid; else hi = mid; }
    return Math.abs(points[lo][0] - step) <= Math.abs(points[hi][0] - step) ? points[lo] : points[hi];
  }

  function axes(root, xs, ys, x, y) {
    const xt = niceTicks(xs[0], xs[1], 6).filter(t => Number.isInteger(t));  // steps are whole numbers
    const yt = niceTicks(ys[0], ys[1], 5);
    for (const t of yt) {
      root.appendChild(svg("line", {x1: ML, x2: W - MR, y1: y(t), y2: y(t), stroke: "#eceef2"}));
      const label = svg("text", {x: ML - 6, y: y(t) + 3, "text-anchor": "end"});
      label.textContent = fmt(t); root.appendChild(label);
    }
    for (const t of xt) {
      const label = svg("text", {x: x(t), y: H - MB + 14, "text-anchor": "middle"});
      label.textContent = fmt(t); root.appendChild(label);
    }
    root.appendChild(svg("line", {x1: ML, x2: W - MR, y1: H - MB, y2: H - MB, stroke: "#b9bfca"}));
    const xl = svg("text", {x: W - MR, y: H - 2, "text-anchor": "end"}); xl.textContent = "step"; root.appendChild(xl);
  }

  function chart(spec, smoothing) {
    const box = el("div", {class: "chart"});
    box.appendChild(el("div", {class: "title"}, spec.title));
    const stacked = spec.kind === "stack";
    const keys = spec.keys.filter(k => (DATA.series[k] || []).some(p => p[1] !== null));
    const all = stacked && spec.total ? keys.concat([spec.total]) : keys;
    const steps = all.flatMap(k => DATA.series[k].map(p => p[0]));
    let stack = null;
    if (stacked) stack = stackLayers(keys);
    const values = stacked ? stack.tops.concat(spec.total ? DATA.series[spec.total].map(p => p[1]) : [])
                           : all.flatMap(k => DATA.series[k].map(p => p[1]));
    const xs = domain(steps, false), ys = domain(values.filter(v => v !== null).concat(stacked ? [0] : []), true);
    const x = s => ML + (s - xs[0]) / (xs[1] - xs[0]) * (W - ML - MR);
    const y = v => H - MB - (v - ys[0]) / (ys[1] - ys[0]) * (H - MT - MB);
    const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
    axes(root, xs, ys, x, y);
    const color = k => COLORS[spec.keys.indexOf(k) % COLORS.length];
    if (stacked) {
      stack.layers.forEach(layer => root.appendChild(svg("path", {
        d: areaPath(stack.steps, layer.lower, layer.upper, x, y), fill: color(layer.key), "fill-opacity": 0.55,
        stroke: color(layer.key), "stroke-width": 1, class: "series"})));
      if (spec.total) root.appendChild(svg("path", {d: pathOf(DATA.series[spec.total], x, y), fill: "none",
        stroke: "#1d2330", "stroke-width": 1.5, "stroke-dasharray": "4 3", class: "series"}));
    } else {
      for (const k of keys) drawSeries(root, DATA.series[k], color(k), smoothing, x, y);
    }
    const hover = svg("line", {y1: MT, y2: H - MB, stroke: "#9aa3b2", visibility: "hidden"});
    root.appendChild(hover);
    box.appendChild(root);
    box.appendChild(legend(all, k => k === spec.total ? "#1d2330" : color(k), spec.total));
    const tip = el("div", {class: "tip"});
    box.appendChild(tip);
    attachHover(root, box, hover, tip, all, x, xs);
    return box;
  }
  // The slider's weight applies to the densest curve; a sparser one (evals) gets the weight that spans the same
  // number of steps, w^(densest / its points), so an eval every 50 steps is not flattened.
  const DENSEST = Math.max(1, ...Object.values(DATA.series).map(pts => pts.length));
  function drawSeries(root, points, color, smoothing, x, y) {
    const smoothed = smooth(points, Math.pow(smoothing, DENSEST / Math.max(1, points.length)));
    if (smoothed !== points)
      root.appendChild(svg("path", {d: pathOf(points, x, y), fill: "none", stroke: color, "stroke-opacity": points.length > 300 ? 0.15 : 0.25,
                                    "stroke-width": 1}));
    root.appendChild(svg("path", {d: pathOf(smoothed, x, y), fill: "none", stroke: color, "stroke-width": 1.8,
                                  class: "series"}));
    if (points.length <= 30) for (const [s, v] of points) if (v !== null)
      root.appendChild(svg("circle", {cx: x(s), cy: y(v), r: 2.5, fill: color}));
  }
  function stackLayers(keys) {
    const steps = [...new Set(keys.flatMap(k => DATA.series[k].map(p => p[0])))].sort((a, b) => a - b);
    const base = steps.map(() => 0), layers = [];
    for (const k of keys) {
      const at = new Map(DATA.series[k].map(p => [p[0], p[1] || 0]));
      const lower = base.slice();
      steps.forEach((s, i) => { base[i] += at.get(s) || 0; });
      layers.push({key: k, lower: lower, upper: base.slice()});
    }
    return {steps: steps, layers: layers, tops: base.slice()};
  }
  function areaPath(steps, lower, upper, x, y) {
    let d = "";
    steps.forEach((s, i) => { d += (i ? "L" : "M") + x(s).toFixed(1) + " " + y(upper[i]).toFixed(1); });
    for (let i = steps.length - 1; i >= 0; i--) d += "L" + x(steps[i]).toFixed(1) + " " + y(lower[i]).toFixed(1);
    return d + "Z";
  }
  function legend(keys, color, total) {
    const box = el("div", {class: "legend"});
    for (const k of keys) {
      const pts = DATA.series[k].filter(p => p[1] !== null);
      const item = el("span", {title: k});
      const swatch = el("i");
      swatch.style.background = color(k);
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(k + (k === total ? " (total)" : "") + " " +
                                               fmt(pts.length ? pts[pts.length - 1][1] : null)));
      box.appendChild(item);
    }
    return box;
  }
  function attachHover(root, box, hover, tip, keys, x, xs) {
    root.addEventListener("mousemove", ev => {
      const rect = root.getBoundingClientRect();
      const px = (ev.clientX - rect.left) / rect.width * W;
      const step = xs[0] + (px - ML) / (W - ML - MR) * (xs[1] - xs[0]);
      const rows = keys.map(k => [k, nearest(DATA.series[k], step)]);
      const at = rows.length ? rows[0][1][0] : step;
      hover.setAttribute("x1", x(at)); hover.setAttribute("x2", x(at)); hover.setAttribute("visibility", "visible");
      tip.replaceChildren(el("div", {}, "step " + fmt(at)),
                          ...rows.map(([k, p]) => el("div", {}, k + ": " + fmt(p[1]))));
      tip.style.display = "block";
      tip.style.left = Math.min(ev.clientX - box.getBoundingClientRect().left + 12, box.clientWidth - 160) + "px";
      tip.style.top = "28px";
    });
    root.addEventListener("mouseleave", () => { tip.style.display = "none"; hover.setAttribute("visibility", "hidden"); });
  }

  function renderCharts(smoothing) {
    const host = document.getElementById("charts");
    host.replaceChildren();
    let count = 0;
    const grid = el("div", {class: "grid"});
    for (const group of DATA.groups)
      for (const spec of group.charts) { grid.appendChild(chart(spec, smoothing)); count += 1; }
    host.appendChild(grid);
    if (!count) host.appendChild(el("p", {class: "muted"}, "No metrics logged yet."));
    return count;
  }

  // ---------- traces
  const state = {step: "all", min: "", max: "", correct: "all", trunc: "all", text: "", sort: "step-desc", page: 0,
                 open: 0};
  const controls = {step: "f-step", min: "f-min", max: "f-max", correct: "f-correct", trunc: "f-trunc",
                    text: "f-text", sort: "f-sort"};
  function readHash() {  // report.html#correct=incorrect&step=3&open=1: pre-filtered, first row expanded
    const text = decodeURIComponent(location.hash.slice(1));
    if (text.indexOf("=") < 0) return;
    for (const part of text.split("&")) {
      const [k, v] = part.split("=");
      if (k in state && v !== undefined) state[k] = typeof state[k] === "number" ? Math.max(0, parseInt(v, 10) || 0) : v;
    }
  }
  function matches(s) {
    const lo = parseFloat(state.min), hi = parseFloat(state.max);
    if (state.step !== "all" && String(s.step) !== state.step) return false;
    if (!Number.isNaN(lo) && !(s.reward !== null && s.reward >= lo)) return false;
    if (!Number.isNaN(hi) && !(s.reward !== null && s.reward <= hi)) return false;
    if (state.correct === "correct" && s.correct !== true) return false;
    if (state.correct === "incorrect" && s.correct !== false) return false;
    if (state.correct === "unknown" && s.correct !== null) return false;
    if (state.trunc !== "all" && s.truncated !== (state.trunc === "yes")) return false;
    if (state.text) {
      const q = state.text.toLowerCase();
      if (s.completion.toLowerCase().indexOf(q) < 0 && DATA.prompts[s.prompt].toLowerCase().indexOf(q) < 0) return false;
    }
    return true;
  }
  function sorted(list) {
    const key = {"step-desc": s => -s.step, "step-asc": s => s.step, "reward-desc": s => -(s.reward ?? -Infinity),
                 "reward-asc": s => s.reward ?? Infinity, "tokens-desc": s => -(s.tokens ?? 0)}[state.sort] || (s => -s.step);
    return list.map((s, i) => [key(s), i, s]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(t => t[2]);
  }
  function mark(value) {
    if (value === true) return el("span", {class: "ok"}, "✓");
    if (value === false) return el("span", {class: "no"}, "✗");
    return el("span", {class: "muted"}, "–");
  }
  function detail(s) {
    const td = el("td", {colspan: 8});
    const cols = el("div", {class: "cols"});
    const left = el("div"), right = el("div");
    left.append(el("h4", {}, "prompt"), el("pre", {}, DATA.prompts[s.prompt]),
                el("h4", {}, "reference answer"), el("pre", {}, s.answer));
    right.append(el("h4", {}, "completion"), el("pre", {}, s.completion));
    cols.append(left, right);
    td.appendChild(cols);
    td.appendChild(el("h4", {}, "reward breakdown"));
    const parts = el("table", {class: "num parts"});
    parts.appendChild(el("tr")).append(el("th", {}, "component"), el("th", {}, "value"));
    for (const [k, v] of Object.entries(s.parts)) parts.appendChild(el("tr")).append(el("td", {}, k), el("td", {}, fmt(v)));
    parts.appendChild(el("tr")).append(el("td", {}, "total (weighted)"), el("td", {}, fmt(s.reward)));
    td.appendChild(parts);
    td.appendChild(el("p", {class: "muted"}, `id ${s.id} · group ${fmt(s.group)} · ${fmt(s.tokens)} tokens · ` +
                                             (s.truncated ? "truncated (hit the token limit)" : "finished")));
    if (s.errors.length) {
      const box = el("div", {class: "errors"});
      box.append(el("h4", {}, "reward errors"), ...s.errors.map(e => el("pre", {}, e)));
      td.appendChild(box);
    }
    const tr = el("tr", {class: "detail"});
    tr.appendChild(td);
    return tr;
  }
  function renderTraces() {
    const hits = sorted(DATA.samples.filter(matches));
    const pages = Math.max(1, Math.ceil(hits.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const shown = hits.slice(state.page * PAGE, (state.page + 1) * PAGE);
    const body = document.querySelector("#trace-table tbody");
    body.replaceChildren();
    for (const s of shown) {
      const tr = el("tr", {class: "row"});
      tr.append(el("td", {}, fmt(s.step)), el("td", {}, fmt(s.group)), el("td", {}, fmt(s.reward)));
      tr.appendChild(el("td")).appendChild(mark(s.correct));
      tr.append(el("td", {}, fmt(s.tokens)), el("td", {}, s.truncated ? "yes" : ""),
                el("td", {class: "answer"}, s.answer.slice(0, 24)),
                el("td", {class: "preview"}, s.completion.replace(/\s+/g, " ").slice(0, 160)));
      tr.addEventListener("click", () => {
        const next = tr.nextSibling;
        if (next && next.classList.contains("detail")) { next.remove(); tr.classList.remove("open"); }
        else { tr.after(detail(s)); tr.classList.add("open"); }
      });
      body.appendChild(tr);
    }
    if (state.open && body.firstChild) { body.firstChild.click(); state.open = 0; }
    document.getElementById("trace-count").textContent = hits.length
      ? `${state.page * PAGE + 1}–${state.page * PAGE + shown.length} of ${hits.length} matching samples ` +
        `(${DATA.samples.length} embedded); click a row for the full trace`
      : `no sample matches (${DATA.samples.length} embedded)`;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    document.body.dataset.rows = String(shown.length);
    document.body.dataset.matches = String(hits.length);
  }
  function setupTraces() {
    const select = document.getElementById("f-step");
    select.appendChild(el("option", {value: "all"}, "all steps"));
    const steps = [...new Set(DATA.samples.map(s => s.step))].sort((a, b) => b - a);
    for (const s of steps) select.appendChild(el("option", {value: String(s)}, "step " + s));
    readHash();
    for (const [k, id] of Object.entries(controls)) {
      const input = document.getElementById(id);
      input.value = state[k];
      input.addEventListener("input", () => { state[k] = input.value; state.page = 0; renderTraces(); });
    }
    document.getElementById("prev").addEventListener("click", () => { state.page -= 1; renderTraces(); });
    document.getElementById("next").addEventListener("click", () => { state.page += 1; renderTraces(); });
    renderTraces();
  }

  const slider = document.getElementById("smoothing"), shownValue = document.getElementById("smoothing-value");
  slider.value = DATA.smoothing;
  shownValue.textContent = Number(slider.value).toFixed(2);
  slider.addEventListener("input", () => { shownValue.textContent = Number(slider.value).toFixed(2);
                                           renderCharts(Number(slider.value)); });
  const charts = renderCharts(DATA.smoothing);
  setupTraces();
  document.body.dataset.charts = String(charts);
  document.body.dataset.samples = String(DATA.samples.length);
  document.body.dataset.rendered = "ok";
})();
