// Drag to reorder the children of a list (HTML drag and drop). With a `handle` selector an item
// only drags from its handle, so text inside it can still be selected and edited.
export function makeSortable(list, { item, handle = null, onChange = () => {} }) {
  if (list.dataset.sortable) return;
  list.dataset.sortable = "1";
  let dragged = null;
  if (handle) {
    list.addEventListener("pointerdown", (e) => {
      const h = e.target.closest(handle);
      const it = h && h.closest(item);
      if (it) it.draggable = true;
    });
  }
  list.addEventListener("dragstart", (e) => {
    const it = e.target.closest(item);
    if (!it || !list.contains(it)) return;
    dragged = it;
    it.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", "");
  });
  list.addEventListener("dragover", (e) => {
    if (!dragged) return;
    e.preventDefault();
    const over = e.target.closest(item);
    if (!over || over === dragged || !list.contains(over)) return;
    const box = over.getBoundingClientRect();
    const after = e.clientY > box.top + box.height / 2;
    list.insertBefore(dragged, after ? over.nextSibling : over);
  });
  list.addEventListener("drop", (e) => e.preventDefault());
  list.addEventListener("dragend", () => {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    if (handle) dragged.draggable = false;
    dragged = null;
    onChange();
  });
}

// Move `el` one place up (-1) or down (+1) among its siblings.
export function moveBy(el, delta) {
  if (delta < 0 && el.previousElementSibling) el.parentNode.insertBefore(el, el.previousElementSibling);
  if (delta > 0 && el.nextElementSibling) el.parentNode.insertBefore(el.nextElementSibling, el);
}
