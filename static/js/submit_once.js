// Forms marked data-submit-once send once: the first tap disables the button (「提交中…」), a second one sends nothing.
// On a weak signal the answer may never come: after a while the button is given back with a note, since the server
// takes a second send of the same form once (a survey answered twice thanks the citizen, it does not count twice).
(function () {
  "use strict";
  var PATIENCE_MS = 20000;
  Array.prototype.forEach.call(document.querySelectorAll("form[data-submit-once]"), function (form) {
    var button = form.querySelector("button[type=submit]");
    var label = button ? button.textContent : "";
    var timer = null;

    function release() {
      clearTimeout(timer);
      delete form.dataset.sending;
      if (button) { button.disabled = false; button.textContent = label; }
    }

    function tell(message) {
      var box = form.querySelector("[role=alert]");
      if (!box) {
        box = document.createElement("div");
        box.className = "error";
        box.setAttribute("role", "alert");
        form.insertBefore(box, form.firstChild);
      }
      box.textContent = message;
      box.hidden = false;
      box.scrollIntoView({ block: "center" });
    }

    form.addEventListener("submit", function (e) {
      if (e.defaultPrevented) return;  // an earlier check on the page refused it: nothing is sent
      if (form.dataset.sending) { e.preventDefault(); return; }  // the server copes too; this spares the request
      form.dataset.sending = "1";
      if (button) { button.disabled = true; button.textContent = "提交中…"; }
      timer = setTimeout(function () {
        release();
        tell("网络较慢，暂未收到结果。您填写的内容都还在，可以再点一次「" + label + "」，不会重复提交。");
      }, Number(form.dataset.patience) || PATIENCE_MS);  // data-patience: tests wait less
    });
    // Back to a page kept in the back-forward cache: that request is over, let the form be used again.
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) release();
    });
  });
})();
