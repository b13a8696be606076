// Keeps a list page current: re-fetches its server-rendered (escaped) section.
// The page marks the section with id="live-section", data-refresh-url and
// data-refresh-seconds, and has a #refresh-status line whose data-updated-text and
// data-unreachable-text are the (translated) words it shows, with %(time)s and
// %(error)s filled in. Served as a file because the Content-Security-Policy forbids
// inline script.
"use strict";

(function () {
  const section = document.getElementById("live-section");
  const status = document.getElementById("refresh-status");
  if (!section || !status) {
    return;
  }
  const url = section.dataset.refreshUrl;
  const seconds = Number(section.dataset.refreshSeconds) || 5;
  const updatedText = status.dataset.updatedText || "Updated %(time)s.";
  const unreachableText =
    status.dataset.unreachableText || "Cannot reach the server (%(error)s); retrying.";
  let busy = false;

  function say(text, values) {
    return text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? values[name] : whole));
  }

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
      status.textContent = say(updatedText, { time: new Date().toLocaleTimeString() });
      status.classList.remove("stale");
    } catch (error) {
      status.textContent = say(unreachableText, { error: error.message });
      status.classList.add("stale");
    } finally {
      busy = false;
    }
  }

  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
