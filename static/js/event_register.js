// Event page: countdown on the server's clock (not the phone's), live places, and a submit that cannot double-post.
(function () {
  "use strict";
  var form = document.getElementById("ev-form");
  if (!form) return;
  var submit = document.getElementById("ev-submit");
  var countdown = document.getElementById("ev-countdown");
  var remaining = document.getElementById("ev-remaining");
  var fullHint = document.getElementById("ev-full-hint");
  var shortHint = document.getElementById("ev-short-hint");
  var overHint = document.getElementById("ev-over-hint");
  var companions = document.getElementById("companions");
  var opensAt = Number(form.dataset.opensAt);
  var closesAt = Number(form.dataset.closesAt);
  // offset = server - phone, measured when the page was rendered and refined by each poll (half the round trip).
  var offset = Number(form.dataset.serverNow) - Date.now();
  var label = submit ? submit.textContent : "";

  function serverNow() { return Date.now() + offset; }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function selectedLeft() {
    var checked = form.querySelector("input[name=session_id]:checked");
    if (!checked) return null;
    var cell = form.querySelector('li[data-session="' + checked.value + '"] .left');
    return cell ? Number(cell.dataset.left) : null;
  }

  function selectedQuota() {
    var checked = form.querySelector("input[name=session_id]:checked");
    var li = checked && form.querySelector('li[data-session="' + checked.value + '"]');
    return li ? Number(li.dataset.quota) : null;
  }

  function render() {
    if (!submit) return;
    var now = serverNow();
    if (now < opensAt) {
      var s = Math.ceil((opensAt - now) / 1000);
      var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
      remaining.textContent = (d ? d + " 天 " : "") + pad(h) + ":" + pad(m) + ":" + pad(s % 60);
      countdown.hidden = false;
      submit.disabled = true;
      submit.textContent = "尚未开放";
      return;
    }
    countdown.hidden = true;
    if (now >= closesAt) {
      submit.disabled = true;
      submit.textContent = "报名已截止";
      return;
    }
    if (!form.querySelector("input[name=session_id]:checked")) {  // every session called off
      submit.disabled = true;
      submit.textContent = "暂无可报名场次";
      return;
    }
    var left = selectedLeft();
    var party = 1 + (companions ? Number(companions.value) : 0);
    var quota = selectedQuota();
    var over = quota !== null && party > quota;  // no cancellation could ever make room: no waiting list either
    var full = !over && left === 0;
    var short = !over && left !== null && left > 0 && left < party;  // places left, but not for the whole party
    fullHint.hidden = !full;
    shortHint.hidden = !short;
    overHint.hidden = !over;
    if (over) {
      var counts = overHint.querySelectorAll("b");
      counts[0].textContent = quota;
      counts[1].textContent = party;
      if (!form.dataset.sending) { submit.disabled = true; submit.textContent = "请减少同行人数"; }
      return;
    }
    if (short) {
      var figures = shortHint.querySelectorAll("b");
      figures[0].textContent = left;
      figures[1].textContent = party;
    }
    if (!form.dataset.sending) {
      submit.disabled = false;
      submit.textContent = full || short ? "加入候补" : label;
    }
  }

  function poll() {
    if (typeof window.fetch !== "function") return;  // an old WebView: the figures of the page as rendered
    var sent = Date.now();
    fetch(form.dataset.placesUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        var back = Date.now();
        offset = data.now - (sent + back) / 2;
        opensAt = data.opens_at;
        closesAt = data.closes_at;
        Object.keys(data.sessions).forEach(function (id) {
          var li = form.querySelector('li[data-session="' + id + '"]');
          var cell = li && li.querySelector(".left");
          if (!cell) return;  // called off or already begun: nothing to update
          var n = data.sessions[id];
          cell.dataset.left = n;
          cell.textContent = n > 0 ? "剩余 " + n : "已满";
          li.classList.toggle("full", n === 0);
        });
        render();
      })
      .catch(function () { /* keep the last figures; the next poll retries */ });
  }

  // The browser's own bubbles for a blank or malformed field, in Chinese whatever the phone's language.
  Array.prototype.forEach.call(form.querySelectorAll("input[required], input[pattern]"), function (input) {
    input.addEventListener("invalid", function () {
      var label = form.querySelector('label[for="' + input.id + '"]');
      if (input.validity.valueMissing) input.setCustomValidity("请填写" + (label ? label.textContent.trim() : "此项"));
      else if (input.validity.patternMismatch) input.setCustomValidity(input.title || "格式不正确");
    });
    input.addEventListener("input", function () { input.setCustomValidity(""); });
  });

  form.addEventListener("change", render);
  var errorBox = document.getElementById("ev-error");

  function refused(message) {
    delete form.dataset.sending;
    errorBox.textContent = message;
    errorBox.hidden = false;
    errorBox.scrollIntoView({ block: "center" });
    render();
  }

  form.addEventListener("submit", function (e) {
    if (form.dataset.sending || serverNow() < opensAt) { e.preventDefault(); return; }  // the server dedupes too
    form.dataset.sending = "1";
    if (submit) { submit.disabled = true; submit.textContent = "提交中…"; }
    if (typeof window.fetch !== "function" || typeof FormData !== "function") return;  // old WebView: a plain post
    e.preventDefault();
    errorBox.hidden = true;
    // Sent in the background: a refusal is shown here with everything typed kept, and no POST page is left in the
    // history for the back button to resend.
    var body = new FormData(form);
    body.append("from_page", "1");
    var settled = false;
    // A request that hangs must not leave the button at 「提交中…」: after 30 s the page says so and can be sent
    // again (a registration that did reach the server is found again, not doubled).
    var timer = setTimeout(function () {
      if (settled) return;
      settled = true;
      refused("网络不稳定，暂未收到结果。请稍后再试，或到「我的报名」查看是否已报名成功");
    }, 30000);
    fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-Requested-With": "fetch" }
    })
      .then(function (r) { return r.json().catch(function () { return { error: "服务繁忙，请稍后再试" }; }); })
      .then(function (data) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (data.url) { window.location.assign(data.url); return; }
        refused(data.error || "提交未成功，请稍后再试");
      })
      .catch(function () {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        refused("网络不稳定，报名未送达，请检查网络后重试");
      });
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) { delete form.dataset.sending; render(); }  // back from 我的报名: the form is usable again
  });
  render();
  setInterval(render, 250);
  // Near the opening minute everyone polls at once: spread the polls, and keep them slow while the page idles.
  function schedule() {
    var near = Math.abs(opensAt - serverNow()) < 120000;
    setTimeout(function () { poll(); schedule(); }, (near ? 3000 : 10000) + Math.random() * 2000);
  }
  schedule();
})();
