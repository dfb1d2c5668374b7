// A photo's page: while an upload to WeChat is queued or under way (the page says so in #upload-wait), read the page
// again every few seconds and show its renditions in place: 排队中 becomes 已上传 or 失败 with the reason and 重试.
// Not a reload: a caption being typed on the same page would be lost.
(function () {
  "use strict";
  var table = document.getElementById("renditions");
  if (!table || !window.fetch || !window.DOMParser) return;
  var EVERY = 3000;
  var GIVE_UP = 15 * 60 * 1000; // an upload on its way longer than this has lost its task (UPLOAD_STALE)
  var started = Date.now();

  function poll() {
    if (!document.getElementById("upload-wait") || Date.now() - started > GIVE_UP) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var rows = fresh.querySelector("#renditions tbody");
        if (!rows) return; // signed out meanwhile, say: leave the page as it is
        table.replaceChild(document.importNode(rows, true), table.tBodies[0]);
        var hint = document.getElementById("upload-wait");
        if (hint && !fresh.getElementById("upload-wait")) hint.parentNode.removeChild(hint);
      })
      .catch(function () { /* a moment offline: the next round tries again */ })
      .then(function () { window.setTimeout(poll, EVERY); });
  }
  window.setTimeout(poll, EVERY);
})();
