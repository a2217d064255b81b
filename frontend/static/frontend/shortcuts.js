// Page-level shortcuts: an element with data-key="X" (or data-key-alt="X") is clicked when X is
// pressed outside a text field. Pages with a task form leave keys to annotate.js.
export function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.closest("textarea, select, [contenteditable=''], [contenteditable=true]")) return true;
  const input = target.closest("input");
  return !!input && !["radio", "checkbox", "button", "submit", "reset", "range"].includes(input.type);
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  if (document.getElementById("task-form") || isTyping(event.target)) return;
  if (event.target instanceof Element && event.target.closest("a, button") && event.key === "Enter") return;
  const key = CSS.escape(event.key);
  const el = document.querySelector(`[data-key="${key}"], [data-key-alt="${key}"]`);
  if (el) {
    event.preventDefault();
    el.click();
  }
});
