// Check-in scanner. Inside WeChat: WeChat's own scanner through the JS-SDK (iOS has no BarcodeDetector);
// elsewhere, or when the JS-SDK fails: the camera through BarcodeDetector where the browser has it, else
// typed/pasted tokens.
// Every scan gets its own nonce; a network retry resends the same nonce, so the server answers "valid" again
// instead of calling it a reuse.
(function () {
  "use strict";
  var form = document.getElementById("manual");
  var input = document.getElementById("token");
  var box = document.getElementById("result");
  var detail = document.getElementById("detail");
  var hint = document.getElementById("camera-hint");
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var sessionId = form.dataset.session || null;  // scanning at one session's door: other sessions' tickets fail
  var LABEL = { valid: "有效", used: "已签到", invalid: "无效" };
  var lastToken = "", lastAt = 0, busy = false;

  function nonce() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var a = new Uint8Array(16); crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function show(status, text) {
    box.className = "result " + status;
    box.firstElementChild.textContent = LABEL[status] || status;
    detail.textContent = text;
    if (navigator.vibrate) navigator.vibrate(status === "valid" ? 80 : [60, 60, 60]);
  }

  function send(token, scanNonce, attempt) {
    return fetch(form.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" },
      body: JSON.stringify({ token: token, nonce: scanNonce, session_id: sessionId })
    }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).catch(function (err) {
      if (attempt < 3) {  // same nonce: the server recognises the retry of this scan
        return new Promise(function (ok) { setTimeout(ok, 400 * (attempt + 1)); })
          .then(function () { return send(token, scanNonce, attempt + 1); });
      }
      throw err;
    });
  }

  // Returns false when the token was not taken (empty, or a check still running).
  function check(token, fromCamera) {
    token = (token || "").trim();
    if (!token || busy) return false;
    var now = Date.now();
    // The same code still in front of the lens; typed or pasted codes are always checked, so a second
    // presentation of a code just admitted shows 已签到 instead of leaving 有效 on the screen.
    if (fromCamera && token === lastToken && now - lastAt < 3000) return false;
    lastToken = token; lastAt = now; busy = true;
    box.className = "result"; box.firstElementChild.textContent = "核验中…"; detail.textContent = "";
    send(token, nonce(), 0).then(function (d) {
      var parts = [d.message];
      if (d.name) parts.push(d.name + (d.party > 1 ? "（共 " + d.party + " 人）" : ""));
      if (d.session) parts.push("场次 " + d.session);
      if (d.status === "used" && d.at) parts.push("签到时间 " + d.at);
      show(d.status, parts.join(" · "));
    }).catch(function () {
      show("invalid", "网络异常，请重试");
    }).then(function () { busy = false; });
    return true;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (check(input.value, false)) input.value = "";  // kept while a check runs: resubmit it after
  });

  var picker = document.getElementById("session");
  if (picker) picker.addEventListener("change", function () { picker.form.submit(); });

  // `why` prefixes the hint when WeChat's scanner was tried first and failed.
  function startCamera(why) {
    why = why || "";
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      hint.textContent = why + "此浏览器不支持摄像头识别二维码，请使用扫码枪或手动输入。";
      return;
    }
    var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    var video = document.getElementById("video");
    hint.textContent = why + "正在打开摄像头…";
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (stream) {
      video.srcObject = stream;
      document.getElementById("video-wrap").hidden = false;
      hint.textContent = why + "将二维码置于画面中央";
      return video.play();
    }).then(function () {
      (function tick() {
        detector.detect(video).then(function (codes) {
          if (codes.length) check(codes[0].rawValue, true);
        }).catch(function () {}).then(function () { setTimeout(tick, 200); });
      })();
    }).catch(function () {
      hint.textContent = why + "无法打开摄像头（请允许摄像头权限），可手动输入。";
    });
  }

  function loadScript(src) {
    return new Promise(function (ok, fail) {
      var s = document.createElement("script");
      s.src = src; s.onload = ok; s.onerror = fail;
      document.head.appendChild(s);
    });
  }

  function startWeChat() {
    var button = document.getElementById("wx-scan");
    var state = "loading";  // then "ready" or "fallback", once
    function fallback() {
      if (state === "fallback") return;
      state = "fallback"; clearTimeout(timer); button.hidden = true;
      startCamera("微信扫一扫不可用，");
    }
    // A blocked script or a config that never answers must not leave staff without a scanner.
    var timer = setTimeout(fallback, 10000);
    hint.textContent = "正在启用微信扫一扫…";
    loadScript("https://res.wx.qq.com/open/js/jweixin-1.6.0.js").then(function () {
      var page = location.href.split("#")[0];  // WeChat signs the URL without its fragment
      return fetch(form.dataset.jssdk + "?url=" + encodeURIComponent(page), {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      });
    }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (cfg) {
      wx.config({
        appId: cfg.appId, timestamp: cfg.timestamp, nonceStr: cfg.nonceStr, signature: cfg.signature,
        jsApiList: ["scanQRCode"]
      });
      wx.ready(function () {
        if (state !== "loading") return;
        state = "ready"; clearTimeout(timer);
        button.hidden = false;
        hint.textContent = "点击「扫一扫」调起微信扫码，也可手动输入。";
      });
      wx.error(fallback);  // a bad signature or an unregistered JS domain; may come after ready
    }).catch(fallback);

    button.addEventListener("click", function () {
      wx.scanQRCode({
        needResult: 1,
        scanType: ["qrCode"],
        // Each tap is one deliberate scan (WeChat's scanner closes after a code), so no same-code
        // debounce as for the live camera: scanning an admitted code again shows 已签到.
        success: function (res) {
          if (res.resultStr && !check(res.resultStr, false)) hint.textContent = "上一个二维码仍在核验，请稍后再扫。";
        }
      });
    });
  }

  if (/MicroMessenger/i.test(navigator.userAgent)) startWeChat(); else startCamera();
})();
