// Menus of the project navigation (<details data-nav-group>): one open at a time, closed by a click
// elsewhere or by Escape.
const groups = () => document.querySelectorAll("details[data-nav-group]");

function closeAll(except = null) {
  groups().forEach((g) => {
    if (g !== except) g.open = false;
  });
}

document.addEventListener("toggle", (e) => {
  if (e.target.matches?.("details[data-nav-group]") && e.target.open) closeAll(e.target);
}, true);
document.addEventListener("click", (e) => {
  if (!(e.target instanceof Element) || !e.target.closest("details[data-nav-group]")) closeAll();
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") closeAll();
});
