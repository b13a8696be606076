// The overview page: draws the incidents-per-day chart with Chart.js (when the page
// loaded it), and again whenever live-section.js has replaced the section. Without the
// library the table beside the chart has the same figures. Served as a file: the CSP
// forbids inline script.
"use strict";

(function () {
  const section = document.getElementById("live-section");
  if (!section || typeof window.Chart !== "function") {
    return;
  }

  function draw() {
    for (const figure of section.querySelectorAll("figure.overview-chart")) {
      const canvas = figure.querySelector("canvas");
      if (!canvas) {
        continue;
      }
      const old = window.Chart.getChart(canvas);
      if (old) {
        old.destroy();
      }
      new window.Chart(canvas, {
        type: "bar",
        data: {
          labels: JSON.parse(figure.dataset.labels),
          datasets: [{
            label: figure.dataset.label,
            data: JSON.parse(figure.dataset.values),
            backgroundColor: "#2563eb",
          }],
        },
        options: {
          animation: false,
          aspectRatio: 2.6,
          plugins: { legend: { display: false } },
          scales: {
            x: { ticks: { maxTicksLimit: 10, autoSkip: true } },
            y: { beginAtZero: true, ticks: { precision: 0 } },
          },
        },
      });
    }
  }

  // live-section.js swaps the section's HTML; a new canvas needs its chart drawn.
  new MutationObserver(draw).observe(section, { childList: true });
  draw();
})();
