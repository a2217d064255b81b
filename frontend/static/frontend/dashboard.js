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

const kinds = data.kinds.map((k) => k.kind);
new Chart(document.getElementById("chart-kinds"), {
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

new Chart(document.getElementById("chart-days"), {
  type: "bar",
  data: {
    labels: data.days.map((d) => d.day.slice(5)),
    datasets: [{ label: "Annotations", data: data.days.map((d) => d.n), backgroundColor: accent, maxBarThickness: 18 }],
  },
  options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
});

new Chart(document.getElementById("chart-annotators"), {
  type: "bar",
  data: {
    labels: data.annotators.map((a) => a.username),
    datasets: [{ label: "Annotations", data: data.annotators.map((a) => a.n), backgroundColor: accent, maxBarThickness: 26 }],
  },
  options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
});

new Chart(document.getElementById("chart-seconds"), {
  type: "bar",
  data: {
    labels: kinds,
    datasets: [{ label: "Median seconds", data: data.kinds.map((k) => k.median_seconds), backgroundColor: color("--warn", "#b7791f") }],
  },
  options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
});
