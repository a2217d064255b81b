// Dashboard charts from the page's JSON (Chart.js, vendored).
const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const css = getComputedStyle(document.documentElement);
const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
const accent = color("--accent", "#2f5bd3");
const done = color("--good", "#1f7a4a");
const rest = color("--line", "#d8dce3");
const Chart = window.Chart;

Chart.defaults.font.family = css.getPropertyValue("font-family") || "system-ui, sans-serif";
Chart.defaults.color = color("--muted", "#5b636e");
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.datasets.bar.maxBarThickness = 56;

// An empty chart reads as broken: say what is missing instead.
function draw(id, hasData, emptyText, config) {
  const canvas = document.getElementById(id);
  if (hasData) return new Chart(canvas, config);
  const note = document.createElement("p");
  note.className = "chart-empty";
  note.textContent = emptyText;
  canvas.replaceWith(note);
  return null;
}

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
