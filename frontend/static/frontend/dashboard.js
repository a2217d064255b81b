// Dashboard charts from the page's JSON (Chart.js, vendored).
import { Chart, color, draw, fontFamily } from "./charts.js";

const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const accent = color("--accent", "#2f5bd3");
const done = color("--good", "#1f7a4a");
const rest = color("--line", "#d8dce3");

Chart.defaults.font.family = fontFamily;
Chart.defaults.color = color("--muted", "#5b636e");
Chart.defaults.datasets.bar.maxBarThickness = 56;

const kinds = data.kinds.map((k) => k.kind);
const hasTimings = data.kinds.some((k) => k.median_seconds !== null);

draw("chart-kinds", kinds.length > 0, "No tasks yet.", {
  type: "bar",
  data: {
    labels: kinds,
    datasets: [
      { label: "Complete", data: data.kinds.map((k) => k.complete), backgroundColor: done },
      { label: "Remaining", data: data.kinds.map((k) => k.total - k.complete), backgroundColor: rest },
    ],
  },
  options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
});

draw("chart-days", data.annotations > 0, "No annotations yet.", {
  type: "bar",
  data: {
    labels: data.days.map((d) => d.day.slice(5)),
    datasets: [{ label: "Annotations", data: data.days.map((d) => d.n), backgroundColor: accent, maxBarThickness: 18 }],
  },
  options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
});

draw("chart-annotators", data.annotators.length > 0, "No annotations yet.", {
  type: "bar",
  data: {
    labels: data.annotators.map((a) => a.username),
    datasets: [{ label: "Annotations", data: data.annotators.map((a) => a.n), backgroundColor: accent, maxBarThickness: 26 }],
  },
  options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
});

draw("chart-seconds", hasTimings, "No timings yet.", {
  type: "bar",
  data: {
    labels: kinds,
    datasets: [{ label: "Median seconds", data: data.kinds.map((k) => k.median_seconds), backgroundColor: color("--warn", "#b7791f") }],
  },
  options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
});

// --- Quality ---------------------------------------------------------------------------------
const qualityNode = document.getElementById("quality-data");
const quality = qualityNode ? JSON.parse(qualityNode.textContent) : null;

// Interval whiskers for bar charts: each dataset may carry `intervals` [[low, high], ...] in data units.
const whiskers = {
  id: "whiskers",
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    const horizontal = chart.options.indexAxis === "y";
    const valueScale = horizontal ? chart.scales.x : chart.scales.y;
    chart.data.datasets.forEach((ds, di) => {
      if (!ds.intervals) return;
      const meta = chart.getDatasetMeta(di);
      if (meta.hidden) return;
      ctx.save();
      ctx.strokeStyle = color("--text", "#1d2330");
      ctx.lineWidth = 1.5;
      meta.data.forEach((bar, i) => {
        const iv = ds.intervals[i];
        if (!iv || iv[0] === null || iv[1] === null) return;
        const a = valueScale.getPixelForValue(iv[0]);
        const b = valueScale.getPixelForValue(iv[1]);
        const c = horizontal ? bar.y : bar.x;
        ctx.beginPath();
        if (horizontal) {
          ctx.moveTo(a, c); ctx.lineTo(b, c);
          ctx.moveTo(a, c - 5); ctx.lineTo(a, c + 5);
          ctx.moveTo(b, c - 5); ctx.lineTo(b, c + 5);
        } else {
          ctx.moveTo(c, a); ctx.lineTo(c, b);
          ctx.moveTo(c - 5, a); ctx.lineTo(c + 5, a);
          ctx.moveTo(c - 5, b); ctx.lineTo(c + 5, b);
        }
        ctx.stroke();
      });
      ctx.restore();
    });
  },
};

const intervalLabel = (ds, i, digits) => {
  const iv = ds.intervals && ds.intervals[i];
  return iv && iv[0] !== null ? ` [${iv[0].toFixed(digits)}, ${iv[1].toFixed(digits)}]` : "";
};

if (quality) {
  const agreement = quality.agreement;
  draw("chart-agreement", agreement.length > 0, "Not enough overlapping annotations yet.", {
    type: "bar",
    plugins: [whiskers],
    data: {
      labels: agreement.map((f) => f.label),
      datasets: [
        {
          label: "Agreement",
          data: agreement.map((f) => f.estimate),
          intervals: agreement.map((f) => [f.low, f.high]),
          backgroundColor: accent,
        },
      ],
    },
    options: {
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (c) => `${agreement[c.dataIndex].measure}: ${c.parsed.y.toFixed(3)}${intervalLabel(c.dataset, c.dataIndex, 3)}`,
          },
        },
      },
      // Alpha can be negative (worse than chance): keep the lower ends of the intervals in view.
      scales: { y: { min: Math.min(0, ...agreement.map((f) => (f.low === null ? f.estimate : f.low))), max: 1 } },
    },
  });

  const people = quality.annotators;
  const pct = (v) => (v === null ? null : 100 * v);
  draw("chart-quality-annotators", people.some((a) => a.majority_agreement !== null || a.gold_accuracy !== null), "No overlapping or gold annotations yet.", {
    type: "bar",
    data: {
      labels: people.map((a) => a.annotator),
      datasets: [
        { label: "Agreement with majority %", data: people.map((a) => pct(a.majority_agreement)), backgroundColor: accent, maxBarThickness: 18 },
        { label: "Gold accuracy %", data: people.map((a) => pct(a.gold_accuracy)), backgroundColor: done, maxBarThickness: 18 },
      ],
    },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true, max: 100 } } },
  });

  const board = quality.leaderboard;
  const lows = board.map((m) => (m.low === null ? m.rating : m.low));
  draw("chart-leaderboard", board.length > 0, "No responses with model names compared yet.", {
    type: "bar",
    plugins: [whiskers],
    data: {
      labels: board.map((m) => m.model),
      datasets: [
        {
          label: "Elo",
          data: board.map((m) => m.rating),
          intervals: board.map((m) => [m.low, m.high]),
          backgroundColor: color("--warn", "#b7791f"),
          maxBarThickness: 26,
        },
      ],
    },
    options: {
      indexAxis: "y",
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (c) => `Elo ${c.parsed.x.toFixed(0)}${intervalLabel(c.dataset, c.dataIndex, 0)}` } },
      },
      scales: { x: { suggestedMin: Math.min(...lows, 1000) - 50 } },
    },
  });
}
