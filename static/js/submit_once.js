// Forms marked data-submit-once send once: the first tap disables the button (「提交中…」), a second one sends nothing.
// On a weak signal the answer may never come: after a while the button is given back with a note, since the server
// takes a second send of the same form once (a survey answered twice thanks the citizen, it does not count twice).
// Forms also marked data-background are sent with fetch and answered in JSON ({url} to go to, or {error}): a send
// that fails outright (connection reset, a proxy's 502) is told on the page with everything filled in kept, instead
// of WeChat's own error page. Without fetch (an old WebView) they post as plain forms.
(function () {
  "use strict";
  var PATIENCE_MS = 20000;
  Array.prototype.forEach.call(document.querySelectorAll("form[data-submit-once]"), function (form) {
    var button = form.querySelector("button[type=submit]");
    var label = button ? button.textContent : "";
    var timer = null;
    var attempt = 0;

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

    function sendInBackground(mine) {
      var failed = "提交未送达（网络不稳定或服务繁忙）。您填写的内容都还在，请稍后再点一次「" + label + "」。";
      fetch(form.action || window.location.href, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "Accept": "application/json", "X-Requested-With": "fetch" }
      })
        .then(function (r) { return r.json().catch(function () { return { error: failed }; }); })  // a proxy's page
        .then(function (data) {
          // A success is followed even after the patience ran out: the answer is in, say thank you.
          if (data.url) { window.location.assign(data.url); return; }
          if (mine !== attempt) return;  // an abandoned send: the citizen has moved on
          if (data.csrf_token) {
            var token = form.querySelector("input[name=csrf_token]");
            if (token) token.value = data.csrf_token;
          }
          release();
          tell(data.error || failed);
          form.dispatchEvent(new CustomEvent("refused", { detail: data }));  // the page marks what the server named
        })
        .catch(function () {
          if (mine !== attempt) return;
          release();
          tell(failed);
        });
    }

    form.addEventListener("submit", function (e) {
      if (e.defaultPrevented) return;  // an earlier check on the page refused it: nothing is sent
      if (form.dataset.sending) { e.preventDefault(); return; }  // the server copes too; this spares the request
      form.dataset.sending = "1";
      if (button) { button.disabled = true; button.textContent = "提交中…"; }
      var mine = ++attempt;
      timer = setTimeout(function () {
        attempt++;
        release();
        tell("网络较慢，暂未收到结果。您填写的内容都还在，可以再点一次「" + label + "」，不会重复提交。");
      }, Number(form.dataset.patience) || PATIENCE_MS);  // data-patience: tests wait less
      if (form.hasAttribute("data-background") && typeof window.fetch === "function" &&
          typeof FormData === "function") {
        e.preventDefault();
        sendInBackground(mine);
      }
    });
    // Back to a page kept in the back-forward cache: that request is over, let the form be used again.
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) release();
    });
  });
})();
