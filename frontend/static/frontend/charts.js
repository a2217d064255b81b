// What every chart page shares (Chart.js, vendored): the theme's colours, still charts that fill their box,
// and a chart with no data replaced by a note that says what is missing (an empty chart reads as broken).
const css = getComputedStyle(document.documentElement);
export const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
export const fontFamily = css.getPropertyValue("font-family") || "system-ui, sans-serif";
export const Chart = window.Chart;
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;

export function draw(id, hasData, emptyText, config) {
  const canvas = document.getElementById(id);
  if (hasData) return new Chart(canvas, config);
  const note = document.createElement("p");
  note.className = "chart-empty";
  note.textContent = emptyText;
  canvas.replaceWith(note);
  return null;
}
