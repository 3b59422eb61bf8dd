/* A copy button next to each shortened id: its data-copy goes to the clipboard. */
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("button.copy-id") : null;
  if (!button) { return; }
  var text = button.getAttribute("data-copy");
  function said(ok) {
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(function () { button.textContent = "Copy"; }, 2000);
  }
  function fallback() {
    var area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", "");
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area); button.focus(); said(ok);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { said(true); }, fallback);
  } else { fallback(); }
});

/* A Print button ([data-print]): the browser's print dialog (bank/print.css shapes the page). */
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-print]") : null;
  if (button) { window.print(); }
});

/* After a form's round trip (a command, a time travel) the browser starts at the top of the
   new page: the focus goes to what the form produced instead, the messages first (their
   region is a live region too), else the element marked [data-focus-on-load] (the state
   travelled to, a form's errors). Both are focusable with tabindex="-1" and show the focus. */
(function () {
  var target = document.querySelector("#messages[data-focus-on-load]") ||
    document.querySelector("[data-focus-on-load]");
  if (!target) { return; }
  target.focus({ preventScroll: true });
  if (target.scrollIntoView) { target.scrollIntoView({ block: "center" }); }
})();
