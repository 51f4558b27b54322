// pbsweb dashboard charts: uPlot (static/vendor/uplot) fed by JSON embedded in the page
// (<div data-chart="usage|sync" data-source="<json_script id>">). Redrawn on resize and theme change.
(function () {
  const COLORS = ["#3892d4", "#21bf4b", "#f39c12", "#9b59b6", "#d33", "#16a085", "#7f8c8d"];

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }

  function iec(v) {
    if (v == null) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(v < 10 ? 1 : 0) : Math.round(v)) + " " + units[i];
  }

  function secs(v) {
    if (v == null) return "";
    if (v < 10) return (Math.round(v * 10) / 10) + "s";
    if (v < 60) return Math.round(v) + "s";
    if (v < 3600) return Math.floor(v / 60) + "m " + String(Math.round(v % 60)).padStart(2, "0") + "s";
    return Math.floor(v / 3600) + "h " + String(Math.floor((v % 3600) / 60)).padStart(2, "0") + "m";
  }

  function axis(extra) {
    const text = css("--muted"), grid = css("--border");
    return Object.assign({ stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } }, extra || {});
  }

  function size(el) {
    const w = Math.max(240, el.clientWidth || el.parentNode.clientWidth || 600);
    return { width: w, height: w < 500 ? 180 : 220 };
  }

  function usageChart(el, d) {
    const series = [{}].concat(d.series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
      value: (u, v) => v == null ? "-" : v.toFixed(1) + " %",
    })));
    const opts = Object.assign(size(el), {
      series: series,
      scales: { y: { range: (u, min, max) => [0, Math.max(100, max || 0)] } },
      axes: [axis(), axis({ values: (u, vals) => vals.map(v => v + " %"), size: 50 })],
      legend: { live: true },
    });
    return new uPlot(opts, [d.x].concat(d.series.map(s => s.values)), el);
  }

  function syncChart(el, d) {
    // One slot per run (oldest left): runs are events, not a time series.
    const idx = d.x.map((t, i) => i);
    const label = i => {
      const t = d.x[i];
      if (t == null || !Number.isInteger(i)) return "";
      const dt = new Date(t * 1000);
      return (dt.getMonth() + 1) + "-" + String(dt.getDate()).padStart(2, "0") + " " +
        String(dt.getHours()).padStart(2, "0") + ":" + String(dt.getMinutes()).padStart(2, "0");
    };
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 48] }) : undefined;
    const opts = Object.assign(size(el), {
      series: [
        { label: "Run", value: (u, v) => v == null ? "-" : label(v) + (d.jobs[v] ? " (" + d.jobs[v] + ")" : "") },
        { label: "Uploaded", stroke: COLORS[0], fill: COLORS[0] + "88", paths: bars, points: { show: false },
          scale: "bytes", value: (u, v) => v == null ? "-" : iec(v) },
        { label: "Duration", stroke: COLORS[2], width: 2, scale: "s", points: { show: true, size: 7 },
          value: (u, v) => secs(v) },
      ],
      scales: { x: { time: false, range: () => [-0.5, Math.max(idx.length, 1) - 0.5] },
                bytes: { range: (u, min, max) => [0, Math.max(1024, max || 0) * 1.1] },
                s: { range: (u, min, max) => [0, Math.max(1, max || 0) * 1.1] } },
      axes: [axis({ values: (u, vals) => vals.map(label), space: 70 }),
             axis({ scale: "bytes", values: (u, vals) => vals.map(iec), size: 70 }),
             axis({ scale: "s", side: 1, values: (u, vals) => vals.map(secs), size: 62, grid: { show: false } })],
    });
    return new uPlot(opts, [idx, d.bytes, d.duration], el);
  }

  const builders = { usage: usageChart, sync: syncChart };
  const charts = [];

  function draw(el) {
    const source = document.getElementById(el.dataset.source);
    const build = builders[el.dataset.chart];
    if (!source || !build || typeof uPlot === "undefined") return;
    const data = JSON.parse(source.textContent);
    if (el._chart) { el._chart.destroy(); }
    el.textContent = "";
    el._chart = build(el, data);
    if (charts.indexOf(el) < 0) charts.push(el);
  }

  function drawAll() { document.querySelectorAll("[data-chart]").forEach(draw); }

  let pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      charts.forEach(el => { if (el._chart) el._chart.setSize(size(el)); });
    }, 150);
  });
  // The theme toggle flips data-theme on <html>: redraw with the new colours.
  new MutationObserver(drawAll).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
