// Word-level diff of two texts for the pairwise "show differences" view. Runs in the browser so
// the server does not pay for it on every task; output is built with text nodes only.
const TOKEN = /\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu;
const MAX_CELLS = 4_000_000;

function lcsMarks(a, b) {
  // Marks[i] is true where a[i] is not part of a longest common subsequence with b.
  const n = a.length, m = b.length;
  const width = m + 1;
  const table = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i * width + j] = a[i] === b[j] ? table[(i + 1) * width + j + 1] + 1
        : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
    }
  }
  const changedA = new Array(n).fill(true), changedB = new Array(m).fill(true);
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { changedA[i++] = false; changedB[j++] = false; }
    else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) i++;
    else j++;
  }
  return [changedA, changedB];
}

export function wordDiff(left, right) {
  let a = left.match(TOKEN) || [], b = right.match(TOKEN) || [];
  if ((a.length + 1) * (b.length + 1) > MAX_CELLS) {
    a = left.split(/(?<=\n)/);
    b = right.split(/(?<=\n)/);
  }
  const [ca, cb] = (a.length + 1) * (b.length + 1) > MAX_CELLS ? [a.map(() => true), b.map(() => true)] : lcsMarks(a, b);
  return [a.map((t, k) => [t, ca[k]]), b.map((t, k) => [t, cb[k]])];
}

export function renderDiff(container, segments, cls) {
  container.replaceChildren();
  for (const [text, changed] of segments) {
    if (changed) {
      const mark = document.createElement("mark");
      mark.className = cls;
      mark.textContent = text;
      container.append(mark);
    } else {
      container.append(document.createTextNode(text));
    }
  }
}
