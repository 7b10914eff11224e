// reasonrl compare: overlays the runs' curves and, for a sweep, draws its trials table, parameter importance and
// parallel coordinates from the JSON embedded in the page. Text goes in with textContent only. When done, <body>
// gets data-rendered="ok" with data-charts, data-lines and data-trials; an uncaught error sets data-error.
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const W = 460, H = 220, ML = 50, MR = 12, MT = 10, MB = 26;
  let lines = 0;

  function scale(lo, hi, a, b) {
    const span = hi - lo || 1;
    return v => a + (v - lo) / span * (b - a);
  }
  const color = i => COLORS[i % COLORS.length];

  // ---------- curves: one chart per metric, one path per run
  function chart(key, label) {
    const runs = DATA.runs.map((r, i) => [i, r.series[key] || []]).filter(([, pts]) => pts.length);
    const all = runs.flatMap(([, pts]) => pts.filter(p => p[1] !== null));
    const box = el("div", {class: "chart"});
    box.appendChild(el("div", {class: "title"}, label + " (" + key + ")"));
    const root = svg("svg", {viewBox: "0 0 " + W + " " + H, role: "img"});
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    const x = scale(Math.min(...xs), Math.max(...xs), ML, W - MR), y = scale(Math.min(...ys), Math.max(...ys), H - MB, MT);
    for (const v of [Math.min(...ys), Math.max(...ys)]) {
      const t = svg("text", {x: ML - 4, y: y(v) + 3, "text-anchor": "end"}); t.textContent = fmt(v); root.appendChild(t);
    }
    [Math.min(...xs), Math.max(...xs)].forEach((s, end) => {
      const t = svg("text", {x: x(s), y: H - 8, "text-anchor": end ? "end" : "start"});
      t.textContent = "step " + fmt(s); root.appendChild(t);
    });
    for (const [i, pts] of runs) {
      let d = "", pen = false;
      for (const [s, v] of pts) {
        if (v === null) { pen = false; continue; }
        d += (pen ? "L" : "M") + x(s).toFixed(1) + " " + y(v).toFixed(1); pen = true;
      }
      const path = svg("path", {d: d, fill: "none", stroke: color(i), "stroke-width": 1.6, class: "series"});
      const title = svg("title", {}); title.textContent = DATA.runs[i].name; path.appendChild(title);
      root.appendChild(path);
      lines += 1;
      if (pts.length === 1) root.appendChild(svg("circle", {cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: color(i)}));
    }
    box.appendChild(root);
    return box;
  }
  function renderCurves() {
    const legend = document.getElementById("runs");
    DATA.runs.forEach((r, i) => {
      const item = el("span", {});
      item.appendChild(el("i", {style: "background:" + color(i)}));
      if (r.report) item.appendChild(el("a", {href: r.report}, r.name)); else item.appendChild(el("span", {}, r.name));
      if (r.state) item.appendChild(el("span", {class: "muted"}, " " + r.state));
      legend.appendChild(item);
    });
    const charts = document.getElementById("charts");
    for (const [key, label] of DATA.curves) charts.appendChild(chart(key, label));
    return DATA.curves.length;
  }

  // ---------- sweep: trials table, importance, parallel coordinates
  function renderTrials(sweep) {
    const params = Array.from(new Set(sweep.trials.flatMap(t => Object.keys(t.params))));
    const cols = [["number", "trial"], ["state", "state"], ["value", sweep.objective]].concat(params.map(p => [p, p]));
    const head = document.querySelector("#trial-table thead"), body = document.querySelector("#trial-table tbody");
    const value = (t, c) => c === "number" || c === "state" || c === "value" ? t[c] : t.params[c];
    let order = {col: "value", dir: sweep.direction === "minimize" ? 1 : -1};
    function draw() {
      const rows = sweep.trials.slice().sort((a, b) => {
        const u = value(a, order.col), v = value(b, order.col);
        if (u === null || u === undefined) return 1;
        if (v === null || v === undefined) return -1;
        return (u < v ? -1 : u > v ? 1 : 0) * order.dir;
      });
      body.replaceChildren();
      for (const t of rows) {
        const tr = el("tr", {class: "trial", "data-number": String(t.number)});
        for (const [c] of cols) tr.appendChild(el("td", {}, fmt(value(t, c))));
        if (t.note) tr.title = t.note;
        body.appendChild(tr);
      }
      document.body.dataset.firstTrial = rows.length ? String(rows[0].number) : "";
    }
    const tr = el("tr", {});
    for (const [c, label] of cols) {
      const th = el("th", {class: "sort", "data-col": c}, label);
      th.addEventListener("click", () => { order = {col: c, dir: order.col === c ? -order.dir : -1}; draw(); });
      tr.appendChild(th);
    }
    head.appendChild(tr);
    draw();
    return params;
  }
  function renderImportance(sweep) {
    const root = document.getElementById("importance-body");
    const entries = Object.entries(sweep.importance || {});
    if (!entries.length) { root.appendChild(el("p", {class: "muted"}, "Not computed (fewer than 2 complete trials).")); return; }
    const table = el("table", {class: "num"});
    for (const [name, share] of entries) {
      const row = el("tr", {class: "importance"});
      row.appendChild(el("td", {}, name));
      const cell = el("td", {});
      cell.appendChild(el("span", {class: "bar", style: "width:" + Math.round(240 * share) + "px"}));
      cell.appendChild(el("span", {}, " " + fmt(share)));
      row.appendChild(cell);
      table.appendChild(row);
    }
    root.appendChild(table);
  }
  function renderParallel(sweep, params) {
    const done = sweep.trials.filter(t => t.value !== null && t.value !== undefined);
    const root = document.getElementById("parallel-body");
    if (!done.length || !params.length) { root.appendChild(el("p", {class: "muted"}, "No finished trials yet.")); return 0; }
    const axes = params.concat(["objective"]), PW = Math.max(420, 160 * axes.length), PH = 260, top = 20, bottom = 30;
    const plot = svg("svg", {viewBox: "0 0 " + PW + " " + PH, role: "img", class: "parallel"});
    const ax = scale(0, axes.length - 1, 60, PW - 60);
    const position = {};  // per axis: value -> y
    axes.forEach((name, i) => {
      const vals = done.map(t => name === "objective" ? t.value : t.params[name]);
      const numeric = vals.every(v => typeof v === "number");
      const log = numeric && vals.every(v => v > 0) && Math.max(...vals) / Math.min(...vals) > 20;
      let f;
      if (numeric) {
        const tr = log ? Math.log : (v => v);
        const s = scale(Math.min(...vals.map(tr)), Math.max(...vals.map(tr)), PH - bottom, top);
        f = v => s(tr(v));
      } else {
        const cats = Array.from(new Set(vals.map(v => JSON.stringify(v))));
        const s = scale(0, Math.max(cats.length - 1, 1), PH - bottom, top);
        f = v => s(cats.indexOf(JSON.stringify(v)));
      }
      position[name] = f;
      const ends = numeric ? [Math.min(...vals), Math.max(...vals)] : Array.from(new Set(vals.map(v => JSON.stringify(v)))).map(v => JSON.parse(v));
      for (const v of ends) {
        const tick = svg("text", {x: ax(i) + 4, y: f(v) + 3}); tick.textContent = fmt(v); plot.appendChild(tick);
      }
      plot.appendChild(svg("line", {x1: ax(i), x2: ax(i), y1: top, y2: PH - bottom, stroke: "#aab"}));
      const label = svg("text", {x: ax(i), y: PH - 10, "text-anchor": "middle"}); label.textContent = name + (log ? " (log)" : "");
      plot.appendChild(label);
    });
    const best = done.map(t => t.value), lo = Math.min(...best), hi = Math.max(...best);
    for (const t of done) {
      const good = sweep.direction === "minimize" ? (hi - t.value) / (hi - lo || 1) : (t.value - lo) / (hi - lo || 1);
      const pts = axes.map((name, i) => ax(i).toFixed(1) + "," + position[name](name === "objective" ? t.value : t.params[name]).toFixed(1));
      const line = svg("polyline", {points: pts.join(" "), fill: "none", stroke: "hsl(220, 70%, " + (75 - 45 * good) + "%)", "stroke-width": 1.8, class: "trial-line"});
      const title = svg("title", {}); title.textContent = "trial " + t.number + ": " + fmt(t.value); line.appendChild(title);
      plot.appendChild(line);
    }
    root.appendChild(plot);
    return done.length;
  }

  const charts = renderCurves();
  let trials = 0, drawn = 0;
  if (DATA.sweep) {
    const params = renderTrials(DATA.sweep);
    renderImportance(DATA.sweep);
    drawn = renderParallel(DATA.sweep, params);
    trials = DATA.sweep.trials.length;
  } else {
    for (const id of ["trials", "importance", "parallel"]) document.getElementById(id).hidden = true;
  }
  Object.assign(document.body.dataset, {rendered: "ok", charts: String(charts), lines: String(lines),
                                        trials: String(trials), parallel: String(drawn)});
})();
