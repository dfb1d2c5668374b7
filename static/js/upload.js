// Scene photo upload: one request per photo with a client-generated id; failed requests are retried with backoff,
// and the server answers a retry with the first result, so a flaky connection never makes duplicates.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var list = document.getElementById("upload-progress");
  var token = form.querySelector("input[name=csrf_token]").value;
  var MAX_TRIES = 6;

  function clientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var a = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function send(file, id, row, attempt) {
    var data = new FormData();
    data.append("photo", file, file.name || "photo.jpg");
    data.append("client_id", id);
    ["caption", "address", "latitude", "longitude"].forEach(function (name) {
      data.append(name, document.getElementById(name).value);
    });
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("data-url"));
      xhr.setRequestHeader("X-CSRFToken", token);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) row.textContent = file.name + "：" + Math.round((e.loaded / e.total) * 100) + "%";
      };
      xhr.onload = function () {
        if (xhr.status === 200 || xhr.status === 201) { row.textContent = file.name + "：已上传"; resolve(true); return; }
        if (xhr.status >= 400 && xhr.status < 500) {
          var msg = "上传失败";
          try { msg = JSON.parse(xhr.responseText).error || msg; } catch (e) { /* not JSON */ }
          row.textContent = file.name + "：" + msg; resolve(false); return;
        }
        retry();
      };
      xhr.onerror = xhr.ontimeout = retry;
      xhr.timeout = 120000;
      xhr.send(data);
      function retry() {
        if (attempt + 1 >= MAX_TRIES) { row.textContent = file.name + "：网络不稳定，上传失败，请稍后重试"; resolve(false); return; }
        row.textContent = file.name + "：网络中断，" + (attempt + 1) + " 次重试中…";
        setTimeout(function () { send(file, id, row, attempt + 1).then(resolve); }, Math.min(30000, 1000 * Math.pow(2, attempt)));
      }
    });
  }

  document.getElementById("locate").addEventListener("click", function () {
    if (!navigator.geolocation) return;
    navigator.geolocation.getCurrentPosition(function (pos) {
      document.getElementById("latitude").value = pos.coords.latitude.toFixed(6);
      document.getElementById("longitude").value = pos.coords.longitude.toFixed(6);
      document.getElementById("coords").textContent = pos.coords.latitude.toFixed(5) + ", " + pos.coords.longitude.toFixed(5);
    });
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var files = Array.prototype.slice.call(document.getElementById("photos").files);
    if (!files.length) return;
    var button = document.getElementById("upload-button");
    button.disabled = true;
    var chain = Promise.resolve();
    var ok = 0;
    files.forEach(function (file) {
      var row = document.createElement("li");
      row.textContent = file.name + "：等待上传";
      list.appendChild(row);
      var id = clientId(); // fixed per file: every retry of it carries the same id
      chain = chain.then(function () { return send(file, id, row, 0); }).then(function (done) { if (done) ok += 1; });
    });
    chain.then(function () {
      button.disabled = false;
      var summary = document.createElement("li");
      summary.textContent = "已收到 " + ok + " 张";
      list.appendChild(summary);
    });
  });
})();
