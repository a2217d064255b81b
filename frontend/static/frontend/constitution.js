// Constitution editor: add, retire, reorder (drag or buttons) principles; field names stay
// parallel lists in document order, which is the order the server saves.
import { makeSortable, moveBy } from "./sortable.js";

const list = document.querySelector("[data-principles]");
const template = document.getElementById("principle-template");

function renumber() {
  let n = 0;
  list.querySelectorAll("[data-principle]").forEach((card) => {
    const retired = card.classList.contains("retired");
    card.querySelector("[data-no]").textContent = retired ? "–" : String(++n);
  });
}

const slug = (text) =>
  text.toLowerCase().normalize("NFKD").replace(/[^\w\s-]/g, "").trim().replace(/[\s_-]+/g, "-").slice(0, 100);

list.addEventListener("click", (e) => {
  const card = e.target.closest("[data-principle]");
  if (!card) return;
  const move = e.target.closest("[data-move]");
  if (move) {
    moveBy(card, move.dataset.move === "up" ? -1 : 1);
    move.focus();
    renumber();
  }
  const retire = e.target.closest("[data-retire]");
  if (retire) {
    const retired = !card.classList.contains("retired");
    card.classList.toggle("retired", retired);
    card.querySelector("[data-state]").value = retired ? "retired" : "keep";
    retire.textContent = retired ? "Restore" : "Retire";
    renumber();
  }
});

// A new principle's key follows its name until someone edits the key itself.
list.addEventListener("input", (e) => {
  const card = e.target.closest("[data-principle]");
  if (!card) return;
  const key = card.querySelector("[data-auto-key]");
  if (e.target.matches(".principle-key")) e.target.removeAttribute("data-auto-key");
  else if (key && e.target.matches(".principle-name")) key.value = slug(e.target.value);
});

document.querySelector("[data-add-principle]").addEventListener("click", () => {
  const card = template.content.firstElementChild.cloneNode(true);
  list.appendChild(card);
  renumber();
  card.querySelector(".principle-name").focus();
});

// Browsers without CSS field-sizing: grow each text box to show all of its text.
const autosize = (area) => {
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight + 2, 320)}px`;
};
if (!CSS.supports("field-sizing", "content")) {
  list.querySelectorAll("textarea").forEach(autosize);
  list.addEventListener("input", (e) => e.target.matches("textarea") && autosize(e.target));
}

makeSortable(list, { item: "[data-principle]", handle: ".drag-handle", onChange: renumber });
renumber();
