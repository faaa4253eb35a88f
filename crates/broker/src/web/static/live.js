// Keeps the parts of a page that show live state (marked data-live) up to
// date without a reload: every few seconds it fetches the same page again
// and copies over each marked element whose content changed. Forms and
// anything the visitor is typing into are never marked, so nothing they
// entered is lost.
(function () {
  "use strict";
  var EVERY_MS = 5000;
  function marked(root) {
    return root.querySelectorAll("[data-live]");
  }
  if (!marked(document).length || !window.fetch || !window.DOMParser) {
    return;
  }
  function refresh() {
    if (document.hidden) {
      return;
    }
    fetch(location.pathname + location.search, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      cache: "no-store",
    })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var byKey = {};
        Array.prototype.forEach.call(marked(fresh), function (el) {
          byKey[el.getAttribute("data-live")] = el;
        });
        Array.prototype.forEach.call(marked(document), function (el) {
          var now = byKey[el.getAttribute("data-live")];
          if (now && now.innerHTML !== el.innerHTML) {
            el.innerHTML = now.innerHTML;
          }
        });
      })
      .catch(function () {
        // Offline for a moment: the next round tries again.
      });
  }
  setInterval(refresh, EVERY_MS);
})();
