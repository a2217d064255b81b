// Live chat, keyboard only: type and press Enter to send; the replies stream in from a worker (this page polls
// the turn); pick with the pairwise keys (compare, arena) or mark with h / n (red team), then Enter; e ends the
// conversation (red team: rate the worst reply 0-4); r retries a turn whose worker failed or stopped.
import { digitOf, isTyping, PAIR_KEYS } from "./shortcuts.js";

const root = document.getElementById("chat");
const $ = (sel, el = root) => el.querySelector(sel);
const api = root.dataset.api;
const mode = root.dataset.mode;
const mine = root.dataset.mine === "1";
const csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
const POLL_MS = 250;

let conversation = null;
let readyAt = performance.now();
let busy = false;
let pollTimer = null;

// ---- talking to the API -------------------------------------------------------------------------
async function call(method, path = "", body = undefined) {
  const response = await fetch(api + path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `The server answered ${response.status}.`);
  return data;
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function showError(message) {
  $("[data-error]").textContent = message || "";
}

async function act(work) {
  if (busy) return;
  busy = true;
  showError("");
  try {
    await work();
  } catch (err) {
    showError(err.message);
  } finally {
    busy = false;
    render();
  }
}

// ---- state --------------------------------------------------------------------------------------
const last = () => (conversation && conversation.turns.length ? conversation.turns[conversation.turns.length - 1] : null);
const isOpen = () => conversation && conversation.status === "open";
const running = (turn) => turn && (turn.state === "pending" || turn.state === "generating");
const retryable = (turn) => turn && (turn.state === "failed" || (running(turn) && turn.stale));
const awaitingLabel = () => mine && isOpen() && last()?.state === "ready";
const canSend = () =>
  mine && isOpen() && (!last() || last().state === "labelled") && !(mode === "arena" && conversation.turns.length);

// ---- rendering ----------------------------------------------------------------------------------
function seconds(value) {
  return value == null ? "…" : `${Number(value).toFixed(1)} s`;
}

function latency(turn) {
  const t = turn.timings || {};
  if (!t.first_token_s) return running(turn) ? "waiting for a worker…" : "";
  const first = t.first_token_s.map(seconds).join(" / ");
  const done = (t.complete_s || []).map(seconds).join(" / ");
  return `from sending: first tokens ${first} · complete ${done}`;
}

function turnElement(turn) {
  let li = $(`[data-turn="${turn.index}"]`);
  if (li) return li;
  li = document.createElement("li");
  li.className = "chat-turn";
  li.dataset.turn = turn.index;
  li.innerHTML =
    '<div class="chat-user"><span class="chat-who">You</span><p class="chat-text"></p></div>' +
    '<div class="chat-candidates"></div><p class="chat-latency muted small"></p>' +
    '<p class="chat-status"></p>';
  $(".chat-user .chat-text", li).textContent = turn.message;
  $("[data-log]").appendChild(li);
  return li;
}

function renderCandidates(li, turn) {
  const box = $(".chat-candidates", li);
  box.classList.toggle("pair", turn.candidates.length === 2);
  turn.candidates.forEach((c, i) => {
    let el = box.children[i];
    if (!el) {
      el = document.createElement("article");
      el.className = "response chat-reply";
      el.innerHTML = '<header class="response-head"><span class="letter"></span><span class="chat-model"></span></header>' +
        '<div class="response-body chat-text"></div>';
      box.appendChild(el);
    }
    el.dataset.candidate = c.label;
    el.dataset.done = c.done ? "1" : "";
    $(".letter", el).textContent = turn.candidates.length === 2 ? c.label : "Reply";
    $(".chat-model", el).textContent = c.model ? c.model : "";
    $(".chat-text", el).textContent = c.text;
    el.classList.toggle("kept", turn.state === "labelled" && turn.kept === i);
  });
}

function status(turn) {
  if (turn.state === "failed") return `Failed: ${turn.error || "the worker stopped"}. Press r to retry.`;
  if (running(turn) && turn.stale) return "The worker stopped answering. Press r to retry.";
  if (turn.state === "labelled") {
    if (mode === "redteam") return turn.harmful ? "Marked harmful." : "Marked not harmful.";
    const c = turn.choice || {};
    return `You chose ${c.choice === "both_bad" ? "both bad" : c.choice}${c.strength ? ` (strength ${c.strength})` : ""}.`;
  }
  return "";
}

function render() {
  if (!conversation) return;
  const models = conversation.models;
  $("[data-models]").textContent = models ? `Models: ${models.join(" · ")}` : "Model names are shown when the conversation ends.";
  conversation.turns.forEach((turn) => {
    const li = turnElement(turn);
    li.dataset.state = turn.state;
    renderCandidates(li, turn);
    $(".chat-latency", li).textContent = latency(turn);
    $(".chat-status", li).textContent = status(turn);
  });
  $("[data-decision]").hidden = !awaitingLabel();
  const input = $("[data-input]");
  input.disabled = !canSend();
  $("[data-compose]").hidden = !mine || !isOpen();
  $("[data-closed]").hidden = isOpen();
  if (!isOpen()) $("[data-end]").hidden = true;
  root.dataset.state = last()?.state || "empty";
  root.dataset.status = conversation.status;
}

// ---- polling the turn being generated -----------------------------------------------------------
function schedule() {
  clearTimeout(pollTimer);
  const turn = last();
  if (running(turn) && !turn.stale) pollTimer = setTimeout(poll, POLL_MS);
}

async function poll() {
  const turn = last();
  try {
    const fresh = await call("GET", `turns/${turn.index}/`);
    conversation.turns[conversation.turns.length - 1] = fresh;
    if (fresh.state === "ready") readyAt = performance.now();
    showError("");
  } catch (err) {
    showError(`${err.message} Still trying…`);
  }
  render();
  if (last().state === "ready") blurInput();
  schedule();
}

async function reload() {
  conversation = await call("GET");
  render();
  schedule();
}

// ---- actions ------------------------------------------------------------------------------------
function blurInput() {
  if (document.activeElement === $("[data-input]")) document.activeElement.blur();
}

function focusInput() {
  const input = $("[data-input]");
  if (!input.disabled) input.focus();
}

function send() {
  const input = $("[data-input]");
  const content = input.value;
  if (!content.trim()) return showError("Write a message first.");
  if (!canSend()) return showError(awaitingLabel() ? "Label the replies first." : "You cannot send a message now.");
  act(async () => {
    const turn = await call("POST", "messages/", { content });
    input.value = "";
    conversation.turns.push(turn);
    blurInput();
    schedule();
  });
}

function checked(name) {
  return $(`[data-decision] input[name=${name}]:checked`)?.value;
}

function check(name, value) {
  const input = $(`[data-decision] input[name=${name}][value="${value}"]`);
  if (input) input.checked = true;
}

function clearDecision() {
  root.querySelectorAll("[data-decision] input[name=choice], [data-decision] input[name=harmful]").forEach((i) => (i.checked = false));
  check("strength", "2");
}

function label() {
  const turn = last();
  const spent = Number(((performance.now() - readyAt) / 1000).toFixed(3));
  const common = { client_id: turn.clientId || (turn.clientId = uuid()), seconds_spent: spent };
  let path;
  let body;
  if (mode === "redteam") {
    const harmful = checked("harmful");
    if (harmful === undefined) return showError("Press h (harmful) or n (not harmful) first.");
    path = "mark/";
    body = { ...common, harmful: harmful === "1" };
  } else {
    const choice = checked("choice");
    if (!choice) return showError("Choose A, B, tie or both bad first.");
    path = "choose/";
    body = { ...common, choice };
    if (choice === "A" || choice === "B") body.strength = Number(checked("strength") || 2);
  }
  act(async () => {
    await call("POST", `turns/${turn.index}/${path}`, body);
    clearDecision();
    await reload();
    focusInput();
  });
}

function retry() {
  const turn = last();
  if (!mine || !retryable(turn)) return;
  act(async () => {
    conversation.turns[conversation.turns.length - 1] = await call("POST", `turns/${turn.index}/retry/`);
    schedule();
  });
}

function openEnd(open) {
  $("[data-end]").hidden = !open;
  if (open) blurInput();
}

function end() {
  const body = {};
  if (mode === "redteam") {
    const rating = $("[data-end] input[name=rating]:checked")?.value;
    if (rating === undefined) return showError("Rate the worst reply first: 0 to 4.");
    body.rating = Number(rating);
  }
  act(async () => {
    await call("POST", "close/", body);
    await reload();
  });
}

// ---- keys ---------------------------------------------------------------------------------------
function decisionKey(e, letter, digit) {
  if (mode === "redteam") {
    if (letter === "h" || letter === "n") {
      check("harmful", letter === "h" ? "1" : "0");
      return true;
    }
    return false;
  }
  const choice = PAIR_KEYS[digit ?? ""] ?? PAIR_KEYS[letter];
  if (choice) {
    check("choice", choice);
    if (choice === "A" || choice === "B") check("strength", e.shiftKey ? "3" : "2");
    return true;
  }
  if (["-", "+", "="].includes(e.key)) {
    const now = Number(checked("strength") || 2) + (e.key === "-" ? -1 : 1);
    check("strength", String(Math.max(1, Math.min(3, now))));
    return true;
  }
  return false;
}

function endKey(e, digit) {
  if (e.key === "Escape") openEnd(false);
  else if (e.key === "Enter") end();
  else if (digit !== null && mode === "redteam" && +digit <= 4) {
    const input = $(`[data-end] input[name=rating][value="${digit}"]`);
    if (input) input.checked = true;
  } else return false;
  return true;
}

document.addEventListener("keydown", (e) => {
  if (!conversation || e.defaultPrevented || e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return;
  const letter = e.key.length === 1 ? e.key.toLowerCase() : "";
  const digit = digitOf(e);
  if (isTyping(e.target)) {
    if (e.target === $("[data-input]") && e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    } else if (e.key === "Escape") {
      e.target.blur();
    }
    return;
  }
  if (!$("[data-end]").hidden) {
    if (endKey(e, digit)) e.preventDefault();
    return;
  }
  let handled = true;
  if (awaitingLabel() && e.key === "Enter") label();
  else if (awaitingLabel() && decisionKey(e, letter, digit)) showError("");
  else if (letter === "r" && retryable(last())) retry();
  else if (letter === "e" && mine && isOpen()) openEnd(true);
  else if (e.key === "Enter" && canSend()) focusInput();
  else handled = false;
  if (handled) e.preventDefault();
});

$("[data-compose]").addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});

reload()
  .then(() => {
    if (last()?.state === "ready") readyAt = performance.now();
    focusInput();
    document.documentElement.dataset.chatReady = "1";
  })
  .catch((err) => showError(err.message));
