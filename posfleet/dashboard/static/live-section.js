// Keeps a list page current: re-fetches its server-rendered (escaped) section.
// The page marks the section with id="live-section", data-refresh-url and
// data-refresh-seconds, and has a #refresh-status line. Served as a file because the
// Content-Security-Policy forbids inline script.
"use strict";

(function () {
  const section = document.getElementById("live-section");
  const status = document.getElementById("refresh-status");
  if (!section || !status) {
    return;
  }
  const url = section.dataset.refreshUrl;
  const seconds = Number(section.dataset.refreshSeconds) || 5;
  let busy = false;

  async function refresh() {
    // A hidden tab need not poll; it catches up when it is shown again.
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(url + window.location.search, {
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) {
        // The session ended: a full load takes the user to the login page.
        window.location.reload();
        return;
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      section.innerHTML = await response.text();
      status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      status.classList.remove("stale");
    } catch (error) {
      status.textContent = "Cannot reach the server (" + error.message + "); retrying.";
      status.classList.add("stale");
    } finally {
      busy = false;
    }
  }

  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
