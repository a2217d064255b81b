// Agreement charts from the page's JSON (Chart.js, vendored): a reliability diagram and per-principle bars.
import { color, draw } from "./charts.js";

const data = JSON.parse(document.getElementById("agreement-data").textContent);
const accent = color("--accent", "#2f5bd3");
const warn = color("--bad", "#b3261e");
const line = color("--line", "#d8dce3");

draw("chart-reliability", data.reliability.length > 0, "No task has both a human majority and an AI label yet.", {
  type: "scatter",
  data: {
    datasets: [
      {
        label: "Observed share of A (bubble: tasks)",
        data: data.reliability.map((b) => ({ x: b.mean_p, y: b.observed, n: b.n })),
        backgroundColor: accent,
        pointRadius: data.reliability.map((b) => 3 + Math.sqrt(b.n) * 2),
      },
      { label: "Perfect calibration", type: "line", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], borderColor: line, pointRadius: 0 },
    ],
  },
  options: {
    scales: {
      x: { min: 0, max: 1, title: { display: true, text: "AI P(A), mean per bin" } },
      y: { min: 0, max: 1, title: { display: true, text: "people chose A" } },
    },
    plugins: { tooltip: { callbacks: { label: (c) => `P(A) ${c.raw.x.toFixed(2)} → ${c.raw.y.toFixed(2)}${c.raw.n ? ` (${c.raw.n} tasks)` : ""}` } } },
  },
});

const principles = data.principles;
draw("chart-principles", principles.length > 0, "No AI labels yet.", {
  type: "bar",
  data: {
    labels: principles.map((p) => p.key),
    datasets: [
      { label: "Accuracy vs people", data: principles.map((p) => p.accuracy), backgroundColor: accent },
      { label: "Verdict flips with order", data: principles.map((p) => p.position_flip_rate), backgroundColor: warn },
    ],
  },
  options: { scales: { y: { min: 0, max: 1 } } },
});
