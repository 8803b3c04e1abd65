// hybridq dashboard: the only script, served from this origin (no CDN, no library).
// 1. Reloads the depth table (a server-rendered, escaped fragment) every few seconds, so
//    the server samples depth and the sparklines grow while the page is open.
// 2. Asks for confirmation before a form marked data-confirm is submitted.
(function () {
  "use strict";

  var section = document.querySelector("[data-refresh]");
  if (section) {
    var url = section.getAttribute("data-refresh");
    var period = 1000 * Number(section.getAttribute("data-refresh-seconds") || "5");
    var refresh = function () {
      if (document.hidden) { return; }
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) { if (html !== null) { section.innerHTML = html; } })
        .catch(function () { /* a missed refresh is retried on the next tick */ });
    };
    window.setInterval(refresh, period);
  }

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });
})();
