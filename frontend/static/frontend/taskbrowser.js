// Task browser: the page's "check all" box and the count of checked tasks.
const table = document.getElementById("task-table");
const all = document.getElementById("select-page");
const count = document.getElementById("checked-count");

function boxes() {
  return table ? [...table.querySelectorAll('tbody input[name="task"]')] : [];
}

function update() {
  const checked = boxes().filter((b) => b.checked).length;
  if (count) count.textContent = String(checked);
  if (all) {
    all.checked = checked > 0 && checked === boxes().length;
    all.indeterminate = checked > 0 && checked < boxes().length;
  }
}

all?.addEventListener("change", () => {
  boxes().forEach((b) => { b.checked = all.checked; });
  update();
});
table?.addEventListener("change", update);
update();
