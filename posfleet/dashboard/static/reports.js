// The reports pages: draws each report's charts with Chart.js (loaded before this file
// when it is installed). Every chart's figures are also in the table beside it, so a page
// without the library, or a screen reader, loses nothing. A file: the CSP forbids inline script.
"use strict";

(function () {
  if (typeof window.Chart !== "function") {
    return;
  }
  const colours = ["#2563eb", "#d97706", "#059669", "#dc2626"];
  for (const figure of document.querySelectorAll(".report-charts figure.chart")) {
    const canvas = figure.querySelector("canvas");
    if (!canvas) {
      continue;
    }
    const labels = JSON.parse(figure.dataset.labels);
    const datasets = JSON.parse(figure.dataset.datasets).map(function (series, i) {
      return {
        label: series.label + " (" + figure.dataset.unit + ")",
        data: series.values,
        borderColor: colours[i % colours.length],
        backgroundColor: colours[i % colours.length],
        pointRadius: 2.5,
      };
    });
    new window.Chart(canvas, {
      type: figure.dataset.kind === "line" ? "line" : "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        aspectRatio: 2.2,
        plugins: { legend: { display: datasets.length > 1 } },
        scales: { x: { ticks: { maxTicksLimit: 12, autoSkip: true } }, y: { beginAtZero: true } },
      },
    });
  }
})();
