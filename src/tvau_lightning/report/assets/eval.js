// The evaluation report: metrics with intervals, curves, worst videos, sortable per-video table.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const fmt = (v) => (v === null || v === undefined ? "—" : Math.abs(v) >= 100 ? String(v) : Number(v).toFixed(4));

  $("title").textContent = D.title;
  $("meta").append(el("dt", {}, "folder"), el("dd", {}, D.folder));
  const top = ["stage", "split", "checkpoint", "ckpt_path", "epoch"];
  for (const [k, v] of Object.entries(D.settings)) {
    $(top.includes(k) ? "meta" : "settings").append(el("dt", {}, k), el("dd", {}, String(v)));
  }
  if (D.files.length) $("meta").append(el("dt", {}, "files"), el("dd", {}, D.files.join(", ")));

  const mbody = $("metrics").querySelector("tbody");
  for (const m of D.metrics) {
    const ci = m.low === null || m.high === null ? "—" : `[${fmt(m.low)}, ${fmt(m.high)}]`;
    const tr = el("tr");
    tr.append(el("td", {}, m.name), el("td", {}, fmt(m.value)), el("td", {}, ci));
    mbody.append(tr);
  }
  if (!D.metrics.length) { $("metrics").hidden = true; $("no-metrics").hidden = false; }

  for (const c of D.curves) {
    const fig = el("figure");
    const img = el("img", { src: c.png, alt: c.title });
    const cap = el("figcaption", {}, c.title + " ");
    if (c.csv) cap.append(el("a", { href: c.csv }, "(csv)"));
    fig.append(img, cap);
    $("curves").append(fig);
  }
  if (!D.curves.length) $("no-curves").hidden = false;

  function worst(tableId, list, label, key) {
    const body = $(tableId).querySelector("tbody");
    if (!list.length) { body.append(el("tr")).append(el("td", { class: "muted" }, "none")); return; }
    for (const v of list) {
      const tr = el("tr");
      const cmd = el("td"); cmd.append(el("code", {}, v.command));
      const thumb = el("td");
      if (v.timeline) thumb.append(el("img", { src: v.timeline, alt: `${v.video} timeline`, class: "timeline-thumb" }));
      tr.append(el("td", {}, v.video), el("td", {}, `${label} ${fmt(v[key])}`), thumb, cmd);
      body.append(tr);
    }
  }
  worst("worst-auc", D.worst_auc, "AUC", "auc");
  worst("worst-fp", D.worst_fp, "false positives", "false_positives");
  if (D.fp_source) $("fp-source").textContent = `(${D.fp_source})`;

  // sortable per-video table
  const head = $("per-video").querySelector("thead tr"), vbody = $("per-video").querySelector("tbody");
  let sortKey = null, sortDir = 1;
  function render() {
    const rows = D.rows.slice();
    if (sortKey !== null) {
      const num = D.numeric.includes(sortKey);
      rows.sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        const missX = x === "" || x === undefined, missY = y === "" || y === undefined;
        if (missX || missY) return missX === missY ? 0 : missX ? 1 : -1;  // empty cells last either way
        if (num) return (+x === +y ? 0 : +x < +y ? -1 : 1) * sortDir;
        return String(x).localeCompare(String(y)) * sortDir;
      });
    }
    vbody.replaceChildren(...rows.map((r) => {
      const tr = el("tr");
      for (const c of D.columns) tr.append(el("td", {}, r[c]));
      return tr;
    }));
    for (const th of head.children) {
      th.textContent = th.dataset.col + (th.dataset.col === sortKey ? (sortDir > 0 ? " ▲" : " ▼") : "");
    }
  }
  for (const c of D.columns) {
    const th = el("th", { class: "sortable", "data-col": c }, c);
    if (D.highlight.includes(c)) th.style.color = "var(--text)";
    th.addEventListener("click", () => { sortDir = sortKey === c ? -sortDir : 1; sortKey = c; render(); });
    head.append(th);
  }
  if (!D.columns.length) { $("per-video").hidden = true; $("no-videos").hidden = false; }
  render();
})();
