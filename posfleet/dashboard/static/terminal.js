// The terminal page: applies the live stream's panel updates, draws the health charts
// (with Chart.js when the page loaded it) and shows times as "5 min ago".
// The server sends server-rendered, escaped HTML per panel ({name, html, digest}); a panel
// whose digest the page already shows is left alone, and one with a form being filled in
// waits until the form loses focus. Served as a file: the CSP forbids inline script.
"use strict";

(function () {
  const container = document.getElementById("terminal-panels");
  const status = document.getElementById("live-status");
  if (!container) {
    return;
  }
  const pending = new Map();

  function age(then) {
    const seconds = Math.floor((Date.now() - then.getTime()) / 1000);
    if (seconds < 1) {
      return "just now";
    }
    const units = [["d", 86400], ["h", 3600], ["min", 60]];
    for (const [unit, size] of units) {
      if (seconds >= size) {
        return Math.floor(seconds / size) + " " + unit + " ago";
      }
    }
    return seconds + " s ago";
  }

  function showAges(root) {
    for (const time of root.querySelectorAll("time.ago[datetime]")) {
      const then = new Date(time.getAttribute("datetime"));
      if (!Number.isNaN(then.getTime())) {
        time.textContent = age(then);
      }
    }
  }

  function drawCharts(root) {
    if (typeof window.Chart !== "function") {
      return; // No library: the table beside the charts has the same figures.
    }
    for (const box of root.querySelectorAll(".charts[data-labels]")) {
      const labels = JSON.parse(box.dataset.labels);
      for (const figure of box.querySelectorAll("figure.chart")) {
        const canvas = figure.querySelector("canvas");
        if (!canvas) {
          continue;
        }
        const old = window.Chart.getChart(canvas);
        if (old) {
          old.destroy();
        }
        new window.Chart(canvas, {
          type: "line",
          data: {
            labels: labels,
            datasets: [{
              label: figure.dataset.label + " (" + figure.dataset.unit + ")",
              data: JSON.parse(figure.dataset.values),
              borderColor: "#2563eb",
              backgroundColor: "#2563eb",
              pointRadius: 2.5,
              spanGaps: false,
            }],
          },
          options: {
            animation: false,
            aspectRatio: 2.6,
            plugins: { legend: { display: false } },
            scales: { x: { ticks: { maxTicksLimit: 8, autoSkip: true } } },
          },
        });
      }
    }
  }

  function destroyCharts(section) {
    if (typeof window.Chart !== "function") {
      return;
    }
    for (const canvas of section.querySelectorAll("canvas")) {
      const chart = window.Chart.getChart(canvas);
      if (chart) {
        chart.destroy();
      }
    }
  }

  function busy(section) {
    // Someone is typing in a form of this panel: replacing it would lose what they typed.
    const active = document.activeElement;
    return active !== null && active.form !== undefined && section.contains(active);
  }

  function apply(section, update) {
    destroyCharts(section);
    section.innerHTML = update.html;
    section.dataset.digest = update.digest;
    showAges(section);
    drawCharts(section);
    section.dispatchEvent(new CustomEvent("panel-updated", { bubbles: true }));
    if (status) {
      status.textContent = "Updated live; last change " + new Date().toLocaleTimeString() + ".";
      status.classList.remove("stale");
    }
  }

  function receive(update) {
    const section = document.getElementById("panel-" + update.name);
    if (!section || section.dataset.digest === update.digest) {
      pending.delete(update.name);
      return;
    }
    if (busy(section)) {
      pending.set(update.name, update);
      return;
    }
    pending.delete(update.name);
    apply(section, update);
  }

  container.addEventListener("focusout", function () {
    // Let focus settle on its new element before deciding the form is left.
    window.setTimeout(function () {
      for (const update of Array.from(pending.values())) {
        receive(update);
      }
    }, 0);
  });

  showAges(document);
  drawCharts(document);
  window.setInterval(function () { showAges(document); }, 15000);

  const url = container.dataset.liveUrl;
  if (!url || typeof window.EventSource !== "function") {
    return;
  }
  const source = new EventSource(url);
  source.addEventListener("panel", function (event) {
    receive(JSON.parse(event.data));
  });
  source.addEventListener("ended", function () {
    // The session ended: a full load takes the user to the login page.
    source.close();
    window.location.reload();
  });
  source.addEventListener("open", function () {
    if (status) {
      status.textContent = "Updates live.";
      status.classList.remove("stale");
    }
  });
  source.addEventListener("error", function () {
    if (status) {
      status.textContent = "Cannot reach the server; reconnecting.";
      status.classList.add("stale");
    }
  });
})();
