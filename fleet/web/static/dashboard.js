// kitefleet dashboard: refresh the polled region without a reload; confirm every action.
// The server renders (and escapes) the HTML it sends; this script only swaps it in.
(function () {
  "use strict";
  var region = document.querySelector("[data-poll]");
  var updated = document.getElementById("updated");
  if (region) {
    var url = region.getAttribute("data-poll");
    var every = parseInt(region.getAttribute("data-every"), 10) || 2000;
    var target = document.getElementById(region.getAttribute("data-target"));
    var tick = function () {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.json();
        })
        .then(function (data) {
          target.innerHTML = data.html;
          if (updated) { updated.textContent = data.updated; updated.classList.remove("err"); }
        })
        .catch(function (err) {
          if (updated) { updated.textContent = "not updated: " + err.message; updated.classList.add("err"); }
        })
        .then(function () { window.setTimeout(tick, every); });
    };
    window.setTimeout(tick, every);
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (!question) { return; }
    if (!window.confirm(question)) { event.preventDefault(); return; }
    form.querySelector("input[name=confirm]").value = "yes";
  });
})();
