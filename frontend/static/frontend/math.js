// Typesets the TeX that frontend/markdown.py marked (span.math-inline, .math-display) with the vendored
// KaTeX, on load and in whatever HTMX swaps in. The source is read as text; KaTeX builds the formula with
// DOM calls and, with `trust` off, refuses \href, \url and raw HTML, so a formula cannot run anything.
const MARKED = ".math-inline, .math-display";

function typeset(root) {
  if (!window.katex || !(root instanceof Element || root instanceof Document)) return;
  for (const el of root.querySelectorAll(MARKED)) {
    if (el.dataset.typeset) continue;
    el.dataset.typeset = "1";
    window.katex.render(el.textContent, el, {
      displayMode: el.classList.contains("math-display"),
      throwOnError: false,
      trust: false,
      maxSize: 20,
      maxExpand: 200,
    });
  }
}

typeset(document);
document.addEventListener("htmx:afterSettle", (e) => typeset(e.target));
