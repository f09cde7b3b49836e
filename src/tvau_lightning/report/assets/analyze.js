// The tvau analyze report: video + heatmap overlay + region boxes, score timeline, tracks, answers.
// Frame f is shown at time (f + 0.5) / fps; the current frame is read back as floor(t * fps).
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const N = D.num_frames, fps = D.fps;
  const $ = (id) => document.getElementById(id);
  const video = $("video"), stage = $("stage"), boxes = $("boxes"), timeline = $("timeline");
  const cursor = $("cursor"), readout = $("readout"), toggle = $("heat-toggle"), opacity = $("heat-opacity");
  let heat = $("heat");
  let frame = -1;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const clampFrame = (f) => Math.max(0, Math.min(N - 1, f));
  const frameAt = (t) => clampFrame(Math.floor(t * fps + 0.01));
  const fmt = (v, d) => (typeof v === "number" ? v.toFixed(d === undefined ? 3 : d) : String(v));

  // ---- header ------------------------------------------------------------------------------------
  const name = D.video.split(/[\\/]/).pop();
  $("title").textContent = name;
  const info = D.info || {}, summary = D.summary || {};
  const meta = [
    ["video", `${D.video} — ${D.width}×${D.height}, ${N} frames at ${fmt(fps, 2)} fps`],
    ["model", [info.ahd_checkpoint && `AHD ${info.ahd_checkpoint}`, info.rae_checkpoint && `RAE ${info.rae_checkpoint}`]
      .filter(Boolean).join("; ") || "—"],
    ["backbone", info.backbone || "—"],
    ["sampling", [info.frame_size && `frames resized to ${info.frame_size.join("×")}`,
      info.clip_len && `${info.clip_len}-frame clips`, info.device && `${info.device}`, info.dtype]
      .filter(Boolean).join(", ") || "—"],
  ];
  if (info.labels_from) meta.push(["labels", info.labels_from]);
  // a weakly supervised category AHD: the video's categories ranked (summary.json's "categories")
  const cats = D.categories || null;
  if (cats && summary.categories) {
    const basis = summary.category_basis === "all" ? "all frames" : `frames > ${D.threshold}`;
    meta.push(["categories", summary.categories.slice(0, 5)
      .map((c) => `${c.name} ${fmt(c.score, 2)}${c.frames ? ` (${c.frames} fr)` : ""}`).join(", ") + ` — mean over ${basis}`]);
  }
  for (const [k, v] of meta) { $("meta").append(el("dt", {}, k), el("dd", {}, v)); }
  const chips = [["top category", summary.top_category], ["max score", summary.max_score, 3], [`frames > ${D.threshold}`, summary.frames_above_threshold],
    ["regions", summary.num_regions], ["tracks", summary.num_tracks], ["frame AUC", summary.frame_auc, 3],
    ["abnormal frames (GT)", summary.abnormal_frames_labelled], ["seconds", summary.seconds, 1]];
  for (const [k, v, d] of chips) {
    if (v === undefined || v === null) continue;
    const c = el("span", { class: "chip" }, `${k} `);
    c.append(el("b", {}, typeof v === "number" && d !== undefined ? v.toFixed(d) : String(v)));
    $("chips").append(c);
  }

  // ---- stage: video, heatmap, boxes ----------------------------------------------------------------
  stage.style.aspectRatio = `${D.video_width} / ${D.video_height}`;
  stage.style.width = `min(100%, ${(62 * D.video_width) / D.video_height}vh)`;  // the timeline stays in view
  boxes.width = D.video_width; boxes.height = D.video_height;
  if (D.heatmap.mode === "video") {
    const hv = el("video", { id: "heat", muted: "", playsinline: "", preload: "auto" });
    hv.muted = true; hv.src = D.heatmap.src;
    heat.replaceWith(hv); heat = hv;
  }
  // the heatmap covers the source pixels, not the padding that made the video's sides even
  heat.style.width = `${(100 * D.width) / D.video_width}%`;
  heat.style.height = `${(100 * D.height) / D.video_height}%`;
  video.src = D.src;
  video.addEventListener("error", () => {
    const msg = `cannot play ${D.src}: ${video.error ? video.error.message || video.error.code : "unknown error"}`;
    readout.textContent = msg; readout.className = "error"; console.error(msg);
  });

  const boxesAt = D.tracks.map((t) => new Map(t.frames.map((f, i) => [f, t.boxes[i]])));
  function drawBoxes(f) {
    const ctx = boxes.getContext("2d");
    ctx.clearRect(0, 0, boxes.width, boxes.height);
    const lw = Math.max(2, Math.round(D.width / 320));
    ctx.lineWidth = lw; ctx.font = `${Math.max(12, lw * 6)}px sans-serif`; ctx.textBaseline = "bottom";
    D.tracks.forEach((t, i) => {
      const b = boxesAt[i].get(f);
      if (!b) return;
      ctx.strokeStyle = t.color; ctx.fillStyle = t.color;
      ctx.strokeRect(b[0] + lw / 2, b[1] + lw / 2, b[2] - b[0] + 1 - lw, b[3] - b[1] + 1 - lw);
      ctx.fillText(`#${t.id}`, b[0], Math.max(b[1] - 2, 14));
    });
  }

  let heatIndex = -1;
  function heatImage(f) {  // the stored image serving frame f (binary search over first frames)
    const s = D.heatmap.starts;
    let lo = 0, hi = s.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (s[mid] <= f) lo = mid; else hi = mid - 1; }
    return lo;
  }
  const heatSrc = (k) => `${D.heatmap.src}${String(k).padStart(6, "0")}.jpg`;
  const preloaded = new Set();
  function showHeat(f) {
    if (D.heatmap.mode !== "images") return;
    const k = heatImage(f);
    if (k !== heatIndex) { heatIndex = k; heat.src = heatSrc(k); }
    if (!video.paused) {  // warm the cache for the next images while playing
      for (let j = k + 1; j <= Math.min(k + 4, D.heatmap.starts.length - 1); j++) {
        if (!preloaded.has(j)) { preloaded.add(j); new Image().src = heatSrc(j); }
      }
    }
  }
  function syncHeatVideo() {
    if (D.heatmap.mode !== "video") return;
    if (Math.abs(heat.currentTime - video.currentTime) > 0.5 / fps) heat.currentTime = video.currentTime;
  }
  function applyHeat() {
    heat.hidden = !toggle.checked;
    heat.style.opacity = opacity.value;
  }
  toggle.addEventListener("change", applyHeat);
  opacity.addEventListener("input", applyHeat);

  // ---- timeline --------------------------------------------------------------------------------------
  const lo = D.scores.reduce((a, b) => Math.min(a, b), 0), hi = D.scores.reduce((a, b) => Math.max(a, b), 1);
  function drawTimeline() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(timeline.clientWidth * dpr)), h = Math.max(1, Math.round(timeline.clientHeight * dpr));
    timeline.width = w; timeline.height = h;
    const ctx = timeline.getContext("2d");
    const x = (f) => (f / N) * w, y = (s) => h - 4 * dpr - ((s - lo) / (hi - lo)) * (h - 8 * dpr);
    ctx.fillStyle = "#101114"; ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = "rgba(255, 0, 160, 0.28)";
    for (const [a, b] of D.label_ranges) ctx.fillRect(x(a), 0, Math.max(1, x(b + 1) - x(a)), h);
    for (let f = 0; f < N; f++) {  // one bar per frame (several frames share a pixel on long videos)
      const s = D.scores[f];
      ctx.fillStyle = s > D.threshold ? "#ff4632" : "#46aaff";
      ctx.fillRect(x(f), y(s), Math.max(1, x(f + 1) - x(f)), h - y(s));
    }
    if (D.threshold >= lo && D.threshold <= hi) {
      ctx.strokeStyle = "#ffffff"; ctx.setLineDash([6 * dpr, 4 * dpr]); ctx.lineWidth = dpr;
      ctx.beginPath(); ctx.moveTo(0, y(D.threshold)); ctx.lineTo(w, y(D.threshold)); ctx.stroke();
      ctx.setLineDash([]);
    }
  }
  if (!D.has_labels) { $("legend-gt").hidden = true; $("legend-gt-text").hidden = true; }

  // ---- category lane: each frame above the threshold coloured by its top category ---------------------
  const lane = $("category-lane");
  const categoryText = (f) => (cats ? `${cats.names[cats.frame[f]]} ${fmt(cats.score[f], 2)}` : "");
  function drawLane() {
    if (!cats) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(lane.clientWidth * dpr)), h = Math.max(1, Math.round(lane.clientHeight * dpr));
    lane.width = w; lane.height = h;
    const ctx = lane.getContext("2d");
    ctx.fillStyle = "#101114"; ctx.fillRect(0, 0, w, h);
    for (let f = 0; f < N; f++) {
      if (!(D.scores[f] > D.threshold)) continue;
      ctx.fillStyle = cats.colors[cats.frame[f]];
      ctx.fillRect((f / N) * w, 0, Math.max(1, ((f + 1) / N) * w - (f / N) * w), h);
    }
  }
  if (cats) {
    $("category-wrap").hidden = false;
    const shown = [...new Set(cats.frame.filter((k, f) => D.scores[f] > D.threshold))].sort((a, b) => a - b);
    const legend = $("category-legend");
    legend.append(shown.length ? "top category of frames above the threshold:" : "no frame above the threshold");
    for (const k of shown) legend.append(el("span", { class: "swatch", style: `background:${cats.colors[k]}` }), cats.names[k]);
    legend.hidden = false;
    window.addEventListener("resize", drawLane);
    $("category-wrap").addEventListener("click", (e) => {
      const r = lane.getBoundingClientRect();
      seekFrame(Math.floor(((e.clientX - r.left) / r.width) * N));
    });
    for (const id of ["timeline-wrap", "category-wrap"]) {  // tooltip: the frame under the pointer and its category
      $(id).addEventListener("mousemove", (e) => {
        const r = e.currentTarget.getBoundingClientRect();
        const f = clampFrame(Math.floor(((e.clientX - r.left) / r.width) * N));
        e.currentTarget.title = `frame ${f} · score ${fmt(D.scores[f])} · ${categoryText(f)}`;
      });
    }
  }
  window.addEventListener("resize", drawTimeline);
  $("timeline-wrap").addEventListener("click", (e) => {
    const r = timeline.getBoundingClientRect();
    seekFrame(Math.floor(((e.clientX - r.left) / r.width) * N));
  });

  // ---- the current frame -------------------------------------------------------------------------------
  function show(f) {
    f = clampFrame(f);
    drawBoxes(f);
    showHeat(f);
    if (f === frame) return;
    frame = f;
    readout.dataset.frame = String(f);
    readout.textContent = `frame ${f} / ${N - 1} · ${(f / fps).toFixed(2)} s · score ${fmt(D.scores[f])}`
      + (cats ? ` · ${categoryText(f)}` : "");
    readout.dataset.category = cats ? cats.names[cats.frame[f]] : "";
    cursor.dataset.frame = String(f);
    cursor.style.left = `${(100 * (f + 0.5)) / N}%`;
  }
  function seekFrame(f) {
    f = clampFrame(f);
    video.pause();
    video.currentTime = (f + 0.5) / fps;
    if (D.heatmap.mode === "video") { heat.pause(); heat.currentTime = video.currentTime; }
    show(f);
  }
  window.tvauReport = { seekFrame, get frame() { return frame; }, data: D };  // for scripted use and tests
  video.addEventListener("seeked", () => show(frameAt(video.currentTime)));
  // report.html#frame=120 opens at frame 120 (links, screenshots)
  const start = /(?:^#|&)frame=(\d+)/.exec(location.hash);
  video.addEventListener("loadedmetadata", () => (start ? seekFrame(+start[1]) : show(frame < 0 ? 0 : frame)));
  video.addEventListener("play", () => {
    $("play").textContent = "Pause";
    if (D.heatmap.mode === "video") { heat.currentTime = video.currentTime; heat.play().catch(() => {}); }
  });
  video.addEventListener("pause", () => {
    $("play").textContent = "Play";
    if (D.heatmap.mode === "video") { heat.pause(); heat.currentTime = video.currentTime; }
  });
  video.addEventListener("ended", () => show(N - 1));
  if ("requestVideoFrameCallback" in video) {
    const onFrame = (now, m) => { show(frameAt(m.mediaTime)); syncHeatVideo(); video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
  } else {
    const tick = () => { if (!video.paused) { show(frameAt(video.currentTime)); syncHeatVideo(); } requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  }
  const togglePlay = () => { if (video.paused) video.play().catch((e) => console.warn(e)); else video.pause(); };
  $("play").addEventListener("click", togglePlay);
  $("prev").addEventListener("click", () => seekFrame(frame - 1));
  $("next").addEventListener("click", () => seekFrame(frame + 1));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === " ") { e.preventDefault(); togglePlay(); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); seekFrame(frame - 1); }
    else if (e.key === "ArrowRight") { e.preventDefault(); seekFrame(frame + 1); }
    else if (e.key === "h" || e.key === "H") { toggle.checked = !toggle.checked; applyHeat(); }
  });

  // ---- tracks and answers -----------------------------------------------------------------------------
  const tbody = $("tracks").querySelector("tbody");
  for (const t of D.tracks) {
    const row = el("tr", { class: "clickable", "data-track": t.id, title: `seek to frame ${t.start}` });
    const thumb = el("td"); thumb.append(el("img", { src: t.thumb, alt: `track ${t.id}` }));
    const id = el("td"); id.append(el("span", { class: "swatch", style: `background:${t.color}` }), `#${t.id}`);
    row.append(thumb, id, el("td", {}, `${t.start}–${t.end}`),
      el("td", {}, `${t.end - t.start + 1} fr · ${((t.end - t.start + 1) / fps).toFixed(2)} s`),
      el("td", {}, `${fmt(t.peak)} @${t.peak_frame}`));
    if (cats) row.append(el("td", { class: "category-col", "data-category": t.category || "" }, t.category || "—"));
    row.addEventListener("click", () => seekFrame(t.start));
    tbody.append(row);
  }
  if (!D.tracks.length) { $("tracks").hidden = true; $("no-tracks").hidden = false; }
  if (cats) for (const th of $("tracks").querySelectorAll("th.category-col")) th.hidden = false;
  // an answer's time references were resolved to source frames by tvau analyze ("at frame 3" = the 4th frame the
  // model saw): each is a button that seeks there, and the timeline marks the span an answer's references cover
  const spanMarks = [];
  function markAnswer(i) {
    for (const m of spanMarks) m.classList.toggle("active", m.dataset.answer === String(i));
    for (const li of $("answers").children) li.classList.toggle("active", li.dataset.answer === String(i));
  }
  const rangeText = (f) => (f[0] === f[1] ? `source frame ${f[0]} (${(f[0] / fps).toFixed(2)} s)`
    : `source frames ${f[0]}–${f[1]} (${(f[0] / fps).toFixed(2)}–${((f[1] + 1) / fps).toFixed(2)} s)`);
  if (D.answers && D.answers.length) {
    $("answers-box").hidden = false;
    D.answers.forEach((a, i) => {
      const li = el("li", a.frames ? { class: "clickable", title: `seek to frame ${a.frames[0]}`, "data-answer": i }
        : { "data-answer": i });
      const text = el("div", { class: "a" });
      for (const part of a.parts || [{ text: a.answer }]) {
        if (!part.frames) { text.append(part.text); continue; }
        const cite = el("button", { type: "button", class: part.out_of_range ? "cite out-of-range" : "cite",
          "data-frame": part.frames[0], "data-last": part.frames[1],
          title: `${rangeText(part.frames)}${part.out_of_range ? " — not among the frames the model saw (clamped)" : ""}; click to seek` },
        part.text);
        cite.addEventListener("click", (e) => { e.stopPropagation(); markAnswer(i); seekFrame(part.frames[0]); });
        text.append(cite);
      }
      li.append(el("div", { class: "q" }, a.question), text);
      if (a.frames) {
        li.append(el("div", { class: "range" }, a.cited ? `cites ${rangeText(a.frames)}`
          : `frames ${a.frames[0]}–${a.frames[1]} (${(a.frames[0] / fps).toFixed(2)}–${((a.frames[1] + 1) / fps).toFixed(2)} s)`));
        li.addEventListener("click", () => { markAnswer(i); seekFrame(a.frames[0]); });
      }
      if (a.cited && a.frames) {
        const mark = el("div", { class: "answer-span", "data-answer": i, title: `answer ${i + 1}: ${rangeText(a.frames)}` });
        mark.style.left = `${(100 * a.frames[0]) / N}%`;
        mark.style.width = `${(100 * (a.frames[1] - a.frames[0] + 1)) / N}%`;
        $("timeline-wrap").append(mark);
        spanMarks.push(mark);
        li.addEventListener("mouseenter", () => mark.classList.add("hover"));
        li.addEventListener("mouseleave", () => mark.classList.remove("hover"));
      }
      $("answers").append(li);
    });
  }
  if (spanMarks.length) { $("legend-cite").hidden = false; $("legend-cite-text").hidden = false; }

  applyHeat();
  drawTimeline();
  drawLane();
  show(0);
})();
