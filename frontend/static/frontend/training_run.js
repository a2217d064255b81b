// The training run page: live metric charts polled from the run's data URL, the score histogram, status and log.
(function () {
  const url = JSON.parse(document.getElementById("run-data-url").textContent);
  // Which series each chart plots comes with the data (frontend.views.training.chart_groups).
  const groups = { loss: new Set(), reward: new Set(), kl: new Set(), length: new Set() };
  const colors = ["#2e6be6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#495057"];
  const charts = {};
  const series = {};
  let lastStep = -1;
  for (const key of Object.keys(groups)) {
    const canvas = document.getElementById("chart-" + key);
    if (!canvas || typeof Chart === "undefined") continue;
    charts[key] = new Chart(canvas, {
      type: "line", data: { datasets: [] },
      options: { animation: false, parsing: false, normalized: true, spanGaps: true,
                 scales: { x: { type: "linear", title: { display: true, text: "step" } } },
                 elements: { point: { radius: 0 } }, plugins: { legend: { labels: { boxWidth: 12 } } } },
    });
  }
  function render() {
    for (const [key, chart] of Object.entries(charts)) {
      const names = Object.keys(series).filter((n) => groups[key].has(n)).sort();
      chart.data.datasets = names.map((name, i) => ({
        label: name, data: series[name], borderColor: colors[i % colors.length],
        backgroundColor: colors[i % colors.length], borderWidth: 1.5,
      }));
      chart.update("none");
    }
  }
  function text(id, value) { const el = document.getElementById(id); if (el) el.textContent = value; }
  function showResult(result) {
    // The evaluation is written once, when the run ends: render it server-side by reloading the page once.
    const section = document.getElementById("run-result");
    const evaluation = (result && result.evaluation) || {};
    if (Object.keys(evaluation).length && section && !section.dataset.shown) {
      section.dataset.shown = "1";
      window.location.reload();
    }
  }
  function scoreChart() {
    const canvas = document.getElementById("chart-scores");
    const source = document.getElementById("score-histograms");
    if (!canvas || !source || typeof Chart === "undefined") return;
    const h = JSON.parse(source.textContent);
    const labels = h.edges.slice(0, -1).map((lo, i) => ((lo + h.edges[i + 1]) / 2).toPrecision(3));
    new Chart(canvas, {
      type: "bar",
      data: { labels, datasets: [
        { label: "chosen", data: h.chosen, backgroundColor: "rgba(43, 138, 62, 0.6)" },
        { label: "rejected", data: h.rejected, backgroundColor: "rgba(217, 72, 15, 0.6)" },
      ] },
      options: { animation: false, scales: { x: { title: { display: true, text: "reward" } },
                                                y: { title: { display: true, text: "responses" } } } },
    });
  }
  scoreChart();
  async function poll() {
    let active = true;
    try {
      const response = await fetch(url + "?since_step=" + lastStep, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        for (const [key, names] of Object.entries(data.groups || {})) {
          if (groups[key]) names.forEach((n) => groups[key].add(n));
        }
        for (const [name, points] of Object.entries(data.metrics)) {
          const kept = (series[name] || []).filter((p) => !points.some((q) => q[0] === p.x));
          series[name] = kept.concat(points.map((p) => ({ x: p[0], y: p[1] })));
          for (const p of points) lastStep = Math.max(lastStep, p[0] - 1);
        }
        render();
        text("run-status", data.status + (data.cancel_requested && data.active ? " (cancelling)" : ""));
        text("run-step", data.step);
        text("run-error", data.error || "");
        text("run-log", data.log_tail || "");
        if (data.output_model) text("run-output", data.output_model);
        showResult(data.result);
        active = data.active;
        if (!active) { const form = document.getElementById("cancel-form"); if (form) form.remove(); }
      }
    } catch (e) { /* keep polling */ }
    if (active) setTimeout(poll, 2000);
  }
  poll();
})();
