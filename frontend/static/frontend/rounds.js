// The rounds page: win rate, length and sycophancy charts across rounds.
(function () {
  const rows = JSON.parse(document.getElementById("round-series").textContent);
  if (!rows.length || !window.Chart) return;
  const labels = rows.map(r => "round " + r.number);
  const line = (id, datasets, max) => {
    const el = document.getElementById(id);
    if (el) new Chart(el, { type: "line", data: { labels, datasets },
      options: { animation: false, scales: { y: max ? { min: 0, max } : { beginAtZero: true } } } });
  };
  line("chart-win", [
    { label: "win rate", data: rows.map(r => r.win_rate) },
    { label: "low", data: rows.map(r => r.win_low), borderDash: [4, 4] },
    { label: "high", data: rows.map(r => r.win_high), borderDash: [4, 4] },
  ], 1);
  line("chart-length", [
    { label: "candidates", data: rows.map(r => r.length_tokens) },
    { label: "held-out answers", data: rows.map(r => r.length_heldout) },
  ]);
  line("chart-syco", [
    { label: "policy agrees with a false claim", data: rows.map(r => r.policy_agrees) },
    { label: "reward model prefers the agreeable answer", data: rows.map(r => r.reward_prefers_agreeable) },
    { label: "reward-model accuracy on human labels", data: rows.map(r => r.reward_accuracy) },
  ], 1);
})();
