// Page-level shortcuts: an element with data-key="X" (or data-key-alt="X") is clicked when X is
// pressed outside a text field. Pages with a task form or a chat leave keys to annotate.js or chat.js.
export function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.closest("textarea, select, [contenteditable=''], [contenteditable=true]")) return true;
  const input = target.closest("input");
  return !!input && !["radio", "checkbox", "button", "submit", "reset", "range"].includes(input.type);
}

// The pairwise answer keys, shared by the task form (annotate.js) and the live chat (chat.js).
export const PAIR_KEYS = { 1: "A", a: "A", 2: "B", b: "B", 3: "tie", t: "tie", 4: "both_bad", x: "both_bad" };

export function digitOf(e) {
  const m = /^(?:Digit|Numpad)(\d)$/.exec(e.code || "");
  if (m) return m[1];
  return /^\d$/.test(e.key) ? e.key : null;
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  if (document.getElementById("task-form") || document.getElementById("chat") || isTyping(event.target)) return;
  if (event.target instanceof Element && event.target.closest("a, button") && event.key === "Enter") return;
  const key = CSS.escape(event.key);
  const el = document.querySelector(`[data-key="${key}"], [data-key-alt="${key}"]`);
  if (el) {
    event.preventDefault();
    el.click();
  }
});
