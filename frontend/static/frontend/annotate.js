// Keyboard-first annotation. One keydown listener reads and writes the task's state in the DOM, so
// the same code serves every task HTMX swaps in, the My work editor and the review page.
import { digitOf, isTyping, PAIR_KEYS } from "./shortcuts.js";
import { makeSortable, moveBy } from "./sortable.js";
import { renderDiff, wordDiff } from "./worddiff.js";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const taskForm = () => document.getElementById("task-form");

// ---- timer -------------------------------------------------------------------------------------
// Counts only while the page is visible: time in another tab is not time on the task.
let startedAt = performance.now();
let baseSeconds = 0;
let timerId = null;
let paused = document.hidden;

function elapsed() {
  return paused ? baseSeconds : baseSeconds + (performance.now() - startedAt) / 1000;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden && !paused) {
    baseSeconds = elapsed();
    paused = true;
  } else if (!document.hidden && paused) {
    startedAt = performance.now();
    paused = false;
  }
});

function startTimer(form) {
  baseSeconds = parseFloat(form.dataset.elapsed || "0") || 0;
  startedAt = performance.now();
  paused = document.hidden;
  clearInterval(timerId);
  const paint = () => {
    const el = $("[data-timer]");
    if (!el) return;
    const s = Math.floor(elapsed());
    el.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  paint();
  timerId = setInterval(paint, 1000);
}

// ---- helpers -----------------------------------------------------------------------------------
function check(input, on = true) {
  if (!input || input.disabled) return;
  input.checked = on;
  input.dispatchEvent(new Event("change", { bubbles: true }));
}

function showError(form, message) {
  const el = $("[data-client-error]", form);
  if (el) el.textContent = message;
}

function focusItem(items, index, cls = "is-focus") {
  if (!items.length) return null;
  const i = Math.max(0, Math.min(items.length - 1, index));
  items.forEach((it, j) => it.classList.toggle(cls, i === j));
  items[i].scrollIntoView({ block: "nearest", behavior: "auto" });
  return items[i];
}

const focusedIndex = (items, cls = "is-focus") => Math.max(0, items.findIndex((it) => it.classList.contains(cls)));

// ---- guidelines panel, content warning, skip, undo ---------------------------------------------
function toggleGuide(force) {
  const panel = document.getElementById("guide-panel");
  if (!panel) return;
  const open = force ?? panel.hidden;
  panel.hidden = !open;
  document.querySelector("[data-work-layout]")?.classList.toggle("with-guide", open);
  $$("[data-toggle-guide]").forEach((b) => b.setAttribute("aria-expanded", String(open)));
}

function warningShown(form) {
  const w = $("[data-warning]", form);
  return !!w && !w.hidden;
}

function reveal(form) {
  const w = $("[data-warning]", form);
  if (!w) return;
  w.hidden = true;
  $(".task-body", form).hidden = false;
  $(".task-actions", form).hidden = false;
  form.dataset.elapsed = "0";
  startTimer(form);
}

function openSkip() {
  const dialog = document.getElementById("skip-dialog");
  if (dialog && !dialog.open) {
    dialog.showModal();
    $("input[name=reason]:checked", dialog)?.focus();
  }
}

// ---- validation and submit ---------------------------------------------------------------------
function problem(form) {
  switch (form.dataset.kind) {
    case "pairwise":
      return $("input[name=choice]:checked", form) ? null : "Choose A, B, tie or both bad first.";
    case "rating":
      return $("input[name=thumb]:checked, .aspect input:checked", form) ? null : "Give a thumb or score an aspect first.";
    case "steps": {
      const missing = $$("[data-step]", form).filter(
        (s) => !s.classList.contains("after-stop") && !$("input[type=radio]:checked", s),
      );
      return missing.length ? `Label every step (missing: ${missing.map((s) => +s.dataset.step + 1).join(", ")}).` : null;
    }
    case "demonstration":
      return $("[data-demo-text]", form).value.trim() ? null : "Write a response first.";
    default:
      return null;
  }
}

function prepare(form) {
  if (form.dataset.kind === "ranking") serializeRanking(form);
  const seconds = $("input[name=seconds]", form);
  if (seconds) seconds.value = elapsed().toFixed(3);
}

function submit(form) {
  if (warningShown(form) || form.dataset.sending) return;
  form.requestSubmit();
}

// Work-page requests go through htmx.ajax rather than hx-* attributes, so a key pressed the
// instant a new task arrives (before htmx has processed it) still lands without a page load.
function send(url, { source = document.body, values = {} } = {}) {
  return window.htmx.ajax("POST", url, { source, target: "#work", swap: "innerHTML show:window:top", values });
}

// Runs before HTMX sees the submit (capture phase on the document reaches here first).
document.addEventListener(
  "submit",
  (e) => {
    const form = e.target;
    if (form.closest("#skip-dialog") && window.htmx) {
      e.preventDefault();
      e.stopPropagation();
      send(form.action, { source: form });
      return;
    }
    if (form.id !== "task-form") return;
    const message = problem(form);
    if (message || form.dataset.sending) {
      e.preventDefault();
      e.stopPropagation();
      if (message) showError(form, message);
      return;
    }
    prepare(form);
    form.dataset.sending = "1";
    if (form.dataset.mode === "work" && window.htmx) {
      e.preventDefault();
      e.stopPropagation();
      send(form.action, { source: form });
    }
  },
  true,
);

function undo() {
  const button = $("[data-undo]");
  if (button) send(button.dataset.undoUrl, { values: { annotation: button.dataset.annotation } });
}

function skipUnwanted(form) {
  if (form.dataset.skipUrl) send(form.dataset.skipUrl, { values: { reason: "content_opt_out" } });
}

// ---- pairwise ----------------------------------------------------------------------------------
function syncStrength(form) {
  const choice = $("input[name=choice]:checked", form)?.value;
  const fs = $("[data-strength]", form);
  if (fs) fs.disabled = !(choice === "A" || choice === "B");
}

function setStrength(form, value) {
  check($(`input[name=strength][value="${Math.max(1, Math.min(3, value))}"]`, form));
}

function pairwiseKey(form, e, letter, digit) {
  const choice = PAIR_KEYS[digit ?? ""] ?? PAIR_KEYS[letter];
  if (choice && !e.ctrlKey && !e.metaKey && !e.altKey) {
    check($(`input[name=choice][value="${choice}"]`, form));
    if (choice === "A" || choice === "B") setStrength(form, e.shiftKey ? 3 : 2);
    syncStrength(form);
    return true;
  }
  if (e.key === "-" || e.key === "+" || e.key === "=") {
    const current = +($("input[name=strength]:checked", form)?.value || 2);
    if (!$("[data-strength]", form)?.disabled) setStrength(form, current + (e.key === "-" ? -1 : 1));
    return true;
  }
  if (letter === "d") {
    toggleDiff(form);
    return true;
  }
  return scrollPanes(form, e, letter);
}

function toggleDiff(form) {
  const button = $("[data-toggle-diff]", form);
  const on = button.getAttribute("aria-pressed") !== "true";
  const views = $$("[data-view=diff]", form);
  if (on && views.length === 2 && !views[0].dataset.filled) {
    const text = (letter) => JSON.parse(document.getElementById(`response-text-${letter}`).textContent);
    const [left, right] = wordDiff(text("A"), text("B"));
    renderDiff(views[0], left, "del");
    renderDiff(views[1], right, "ins");
    views.forEach((v) => (v.dataset.filled = "1"));
  }
  button.setAttribute("aria-pressed", String(on));
  button.firstChild.textContent = on ? "Hide differences " : "Show differences ";
  $$("[data-view=plain]", form).forEach((el) => (el.hidden = on));
  $$("[data-view=diff]", form).forEach((el) => (el.hidden = !on));
}

// ---- pairwise: panes that fit the window and scroll together -----------------------------------
// The A/B panes are sized so that the choices and their keys stay in view below them, and scrolling one
// scrolls the other to the same proportion (both reach their ends together). j/k move both a line,
// PageDown/PageUp a page.
const LINE_PX = 40;
const MIN_PANE_PX = 160;
const panes = (form) => $$(".pair .response-body:not([hidden])", form);
let following = null; // the pane being moved to follow the one the reader scrolled

function fitPanes(form) {
  const all = $$(".pair .response-body", form);
  const decision = $(".decision", form);
  if (!all.length || !decision) return;
  const top = all[0].getBoundingClientRect().top + window.scrollY;
  const actions = $(".task-actions", form)?.offsetHeight || 0;
  const gaps = decision.getBoundingClientRect().top - all[0].getBoundingClientRect().bottom;
  const room = window.innerHeight - top - gaps - decision.offsetHeight - actions - 8;
  all.forEach((p) => (p.style.maxHeight = `${Math.max(MIN_PANE_PX, Math.floor(room))}px`));
}

function followScroll(e) {
  const pane = e.target;
  if (!(pane instanceof Element) || !pane.matches(".pair .response-body")) return;
  if (pane === following) {
    following = null;
    return;
  }
  const ratio = pane.scrollTop / Math.max(1, pane.scrollHeight - pane.clientHeight);
  for (const other of panes(pane.closest("form"))) {
    const top = Math.round(ratio * (other.scrollHeight - other.clientHeight));
    if (other !== pane && Math.abs(other.scrollTop - top) >= 1) {
      following = other;
      other.scrollTop = top;
    }
  }
}

function scrollPanes(form, e, letter) {
  const [first] = panes(form);
  if (!first) return false;
  const page = Math.max(LINE_PX, first.clientHeight - LINE_PX);
  const by = { j: LINE_PX, k: -LINE_PX }[letter] ?? { PageDown: page, PageUp: -page }[e.key];
  if (by === undefined) return false;
  first.scrollBy({ top: by, behavior: "auto" });
  return true;
}

document.addEventListener("scroll", followScroll, true);
window.addEventListener("resize", () => {
  const form = taskForm();
  if (form?.dataset.kind === "pairwise") fitPanes(form);
});

// ---- ranking -----------------------------------------------------------------------------------
function serializeRanking(form) {
  const groups = [];
  $$(".rank-item", form).forEach((item, i) => {
    const shown = +item.dataset.shown;
    const tied = i > 0 && item.dataset.tied === "1";
    item.classList.toggle("tied", tied);
    if (tied) groups[groups.length - 1].push(shown);
    else groups.push([shown]);
    $("[data-rank-no]", item).textContent = groups.length;
  });
  $("[data-order]", form).value = JSON.stringify(groups);
}

function rankingKey(form, e, letter) {
  const items = $$(".rank-item", form);
  const i = focusedIndex(items);
  const down = letter === "j" || e.key === "ArrowDown";
  const up = letter === "k" || e.key === "ArrowUp";
  if (down || up) {
    if (e.shiftKey) {
      moveBy(items[i], down ? 1 : -1);
      serializeRanking(form);
      items[i].scrollIntoView({ block: "nearest" });
    } else {
      focusItem(items, i + (down ? 1 : -1));
    }
    return true;
  }
  if (letter === "t" || e.key === "=") {
    toggleTie(form, items[i]);
    return true;
  }
  return false;
}

function toggleTie(form, item) {
  if (!item || !item.previousElementSibling) return;
  item.dataset.tied = item.dataset.tied === "1" ? "0" : "1";
  serializeRanking(form);
}

// ---- rating ------------------------------------------------------------------------------------
function ratingKey(form, e, letter, digit) {
  if (letter === "u" || letter === "d") {
    check($(`input[name=thumb][value="${letter === "u" ? "up" : "down"}"]`, form));
    return true;
  }
  const aspects = $$(".aspect", form);
  const i = focusedIndex(aspects);
  if (letter === "j" || e.key === "ArrowDown" || letter === "k" || e.key === "ArrowUp") {
    focusItem(aspects, i + (letter === "j" || e.key === "ArrowDown" ? 1 : -1));
    return true;
  }
  if (digit && +digit >= 1 && +digit <= 7 && aspects.length) {
    check($(`input[value="${digit}"]`, aspects[i]));
    focusItem(aspects, i + 1);
    return true;
  }
  if ((digit === "0" || e.key === "Backspace") && aspects.length) {
    $$("input", aspects[i]).forEach((r) => (r.checked = false));
    return true;
  }
  return false;
}

// ---- steps -------------------------------------------------------------------------------------
function refreshSteps(form, { auto = true } = {}) {
  const list = $("[data-step-list]", form);
  if (!list) return;
  const steps = $$("[data-step]", list);
  const stop = $("[data-stop]", form);
  const labelOf = (s) => $("input[type=radio]:checked", s)?.value;
  const firstBad = steps.findIndex((s) => labelOf(s) === "-1");
  const previous = list.dataset.firstBad ?? "";
  const now = firstBad < 0 ? "" : String(firstBad);
  // A newly found first error stops the labelling there, as annotators usually want.
  if (auto && now !== previous && now !== "") stop.value = "1";
  if (now === "") stop.value = "";
  list.dataset.firstBad = now;
  steps.forEach((s, i) => {
    const label = labelOf(s);
    s.classList.toggle("label-good", label === "1");
    s.classList.toggle("label-neutral", label === "0");
    s.classList.toggle("label-bad", label === "-1");
    s.classList.toggle("first-error", i === firstBad);
    const after = stop.value === "1" && firstBad >= 0 && i > firstBad;
    s.classList.toggle("after-stop", after);
    $$("input[type=radio]", s).forEach((r) => (r.disabled = after));
  });
  list.classList.toggle("stopped", stop.value === "1");
}

function stepsKey(form, e, letter) {
  const steps = $$("[data-step]", form);
  const i = focusedIndex(steps);
  if (letter === "j" || e.key === "ArrowDown" || letter === "k" || e.key === "ArrowUp") {
    const down = letter === "j" || e.key === "ArrowDown";
    const next = i + (down ? 1 : -1);
    if (steps[next]?.classList.contains("after-stop")) return true;
    focusItem(steps, next);
    return true;
  }
  const set = (value) => {
    check($(`input[value="${value}"]`, steps[i]));
    refreshSteps(form);
  };
  if (letter === "g" || letter === "n" || letter === "b") {
    set({ g: "1", n: "0", b: "-1" }[letter]);
    const after = steps.slice(i + 1).filter((s) => !s.classList.contains("after-stop"));
    if (after.length) focusItem(steps, steps.indexOf(after[0]));
    return true;
  }
  if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
    const current = $("input[type=radio]:checked", steps[i])?.value;
    const order = ["-1", "0", "1"];
    const k = current === undefined ? (e.key === "ArrowRight" ? 2 : 0) : order.indexOf(current) + (e.key === "ArrowRight" ? 1 : -1);
    set(order[Math.max(0, Math.min(2, k))]);
    return true;
  }
  if (letter === "f") {
    toggleStop(form);
    return true;
  }
  return false;
}

function toggleStop(form) {
  const stop = $("[data-stop]", form);
  if ($("[data-step-list]", form).dataset.firstBad === "") return;
  stop.value = stop.value === "1" ? "" : "1";
  refreshSteps(form, { auto: false });
}

// ---- demonstration -----------------------------------------------------------------------------
function startDemo(form, how) {
  const area = $("[data-demo-text]", form);
  const model = document.getElementById("model-response-text");
  const modelText = model ? JSON.parse(model.textContent) : "";
  if (how === "model") area.value = modelText;
  else if (area.value === modelText) area.value = "";
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

function demonstrationKey(form, e, letter) {
  if (letter === "m" && document.getElementById("model-response-text")) {
    startDemo(form, "model");
    return true;
  }
  if (letter === "w") {
    startDemo(form, "blank");
    return true;
  }
  return false;
}

// ---- the one keydown listener ------------------------------------------------------------------
const KIND_KEYS = {
  pairwise: pairwiseKey,
  ranking: rankingKey,
  rating: ratingKey,
  steps: stepsKey,
  demonstration: demonstrationKey,
};

document.addEventListener("keydown", (e) => {
  const form = taskForm();
  if (!form || e.defaultPrevented || e.isComposing) return;
  const dialog = document.getElementById("skip-dialog");
  if (dialog && dialog.open) return skipDialogKey(dialog, e);
  const letter = e.key.length === 1 ? e.key.toLowerCase() : "";
  const digit = digitOf(e);

  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    submit(form);
    return;
  }
  if (isTyping(e.target)) {
    if (e.key === "Escape") {
      e.target.blur();
    }
    return;
  }
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === "?") {
    e.preventDefault();
    toggleGuide();
    return;
  }
  if (e.key === "Escape") {
    toggleGuide(false);
    return;
  }
  if (letter === "z" && $("[data-undo]")) {
    e.preventDefault();
    undo();
    return;
  }
  if (warningShown(form)) {
    if (letter === "v") {
      e.preventDefault();
      reveal(form);
    } else if (letter === "s") {
      e.preventDefault();
      skipUnwanted(form);
    }
    return;
  }
  if (e.key === "Enter") {
    // A focused button or link keeps its own Enter.
    if (e.target instanceof Element && e.target.closest("button, a, summary")) return;
    e.preventDefault();
    submit(form);
    return;
  }
  if (letter === "s" && form.dataset.mode === "work") {
    e.preventDefault();
    openSkip();
    return;
  }
  if (letter === "y" && form.dataset.mode === "review") {
    e.preventDefault();
    $("[data-accept]")?.click();
    return;
  }
  const handler = KIND_KEYS[form.dataset.kind];
  if (handler && handler(form, e, letter, digit)) {
    e.preventDefault();
    showError(form, "");
  }
});

function skipDialogKey(dialog, e) {
  const digit = digitOf(e);
  const reasons = $$("input[name=reason]", dialog);
  if (digit && !isTyping(e.target) && reasons[+digit - 1]) {
    e.preventDefault();
    check(reasons[+digit - 1]);
    reasons[+digit - 1].focus();
  } else if (e.key === "Enter" && !(e.target instanceof Element && e.target.closest("button"))) {
    e.preventDefault();
    $("form", dialog).requestSubmit();
  }
}

// ---- clicks (mouse users get the same behaviour) ------------------------------------------------
document.addEventListener("click", (e) => {
  const t = e.target instanceof Element ? e.target : null;
  if (!t) return;
  const form = taskForm();
  if (t.closest("[data-toggle-guide]")) return toggleGuide();
  if (!form) return;
  if (t.closest("[data-reveal]")) return reveal(form);
  if (t.closest("[data-open-skip]")) return openSkip();
  if (t.closest("[data-close-dialog]")) return t.closest("dialog")?.close();
  if (t.closest("[data-toggle-diff]")) return toggleDiff(form);
  if (t.closest("[data-toggle-stop]")) return toggleStop(form);
  const demo = t.closest("[data-demo-start]");
  if (demo) return startDemo(form, demo.dataset.demoStart);
  const move = t.closest("[data-move]");
  if (move) {
    moveBy(move.closest(".rank-item"), move.dataset.move === "up" ? -1 : 1);
    return serializeRanking(form);
  }
  const tie = t.closest("[data-tie]");
  if (tie) return toggleTie(form, tie.closest(".rank-item"));
  const item = t.closest(".rank-item, .aspect, [data-step]");
  if (item && !t.closest("a")) {
    const siblings = $$(`.${item.classList.contains("aspect") ? "aspect" : item.classList.contains("rank-item") ? "rank-item" : "step"}`, form);
    focusItem(siblings, siblings.indexOf(item));
  }
});

document.addEventListener("change", (e) => {
  const form = taskForm();
  if (!form || !form.contains(e.target)) return;
  if (e.target.name === "choice") syncStrength(form);
  if (/^step_\d+$/.test(e.target.name)) refreshSteps(form);
  showError(form, "");
});

// ---- set-up for each task that arrives ----------------------------------------------------------
function init() {
  const form = taskForm();
  if (!form) return;
  if (!warningShown(form)) startTimer(form);
  if (form.dataset.kind === "ranking") {
    serializeRanking(form);
    makeSortable($("[data-rank-list]", form), { item: ".rank-item", onChange: () => serializeRanking(form) });
  }
  if (form.dataset.kind === "steps") {
    const list = $("[data-step-list]", form);
    const firstBad = $$("[data-step]", form).findIndex((s) => $("input[value='-1']:checked", s));
    list.dataset.firstBad = firstBad < 0 ? "" : String(firstBad);
    refreshSteps(form, { auto: false });
  }
  if (form.dataset.kind === "pairwise") {
    syncStrength(form);
    fitPanes(form);
  }
}

document.addEventListener("htmx:afterSettle", init);
document.addEventListener("htmx:responseError", () => {
  const form = taskForm();
  if (form) {
    delete form.dataset.sending;
    showError(form, "The server could not save this. Check your connection and press Enter again.");
  }
});
document.addEventListener("htmx:sendError", () => {
  const form = taskForm();
  if (form) {
    delete form.dataset.sending;
    showError(form, "No connection to the server. Press Enter to try again.");
  }
});
init();
document.documentElement.dataset.keysReady = "1";
