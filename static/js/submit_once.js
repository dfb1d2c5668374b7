// Forms marked data-submit-once send once: the first tap disables the button (「提交中…」), a second one sends nothing.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("form[data-submit-once]"), function (form) {
    var button = form.querySelector("button[type=submit]");
    var label = button ? button.textContent : "";
    form.addEventListener("submit", function (e) {
      if (e.defaultPrevented) return;  // an earlier check on the page refused it: nothing is sent
      if (form.dataset.sending) { e.preventDefault(); return; }  // the server copes too; this spares the request
      form.dataset.sending = "1";
      if (button) { button.disabled = true; button.textContent = "提交中…"; }
    });
    // Back to a page kept in the back-forward cache: that request is over, let the form be used again.
    window.addEventListener("pageshow", function (e) {
      if (!e.persisted) return;
      delete form.dataset.sending;
      if (button) { button.disabled = false; button.textContent = label; }
    });
  });
})();
