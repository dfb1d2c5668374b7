/* 随手拍 form: photo picking with previews, the phone's position, nearby open tips with "+1", client checks.
   Vanilla JS, no CDN. The server checks everything again; this only saves the citizen a round trip. */
(function () {
  "use strict";
  var form = document.getElementById("tip-form");
  if (!form) return;
  var maxPhotos = parseInt(form.dataset.maxPhotos, 10) || 9;
  var maxBytes = (parseInt(form.dataset.maxMb, 10) || 20) * 1024 * 1024;
  var maxTotal = (parseInt(form.dataset.maxTotalMb, 10) || 100) * 1024 * 1024;
  var csrf = form.querySelector("input[name=csrf_token]").value;
  var input = document.getElementById("photos");
  var previews = document.getElementById("photo-previews");
  var pick = document.getElementById("photo-pick");
  var desc = document.getElementById("description");
  var count = document.getElementById("desc-count");
  var lat = document.getElementById("latitude");
  var lng = document.getElementById("longitude");
  var locStatus = document.getElementById("loc-status");
  var address = document.getElementById("address");
  var phone = document.getElementById("phone");
  var anonymous = document.getElementById("anonymous");
  var nearby = document.getElementById("nearby");
  var nearbyList = document.getElementById("nearby-list");
  var submit = document.getElementById("submit");
  var label = submit.textContent;
  var progress = document.getElementById("upload-progress");
  var progressText = document.getElementById("upload-text");
  var chosen = []; // File objects, in the order picked
  var canMerge = typeof DataTransfer === "function";

  function showError(message) {
    var box = document.getElementById("form-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "form-error";
      box.className = "error";
      box.setAttribute("role", "alert");
      form.parentNode.insertBefore(box, form);
    }
    box.textContent = message;
    box.scrollIntoView({ block: "center" });
  }

  // -- photos: several picks add up (a plain file input would replace the earlier choice) --
  function syncInput() {
    if (!canMerge) return;
    var dt = new DataTransfer();
    chosen.forEach(function (f) { dt.items.add(f); });
    input.files = dt.files;
  }

  function render() {
    previews.innerHTML = "";
    chosen.forEach(function (file, i) {
      var fig = document.createElement("figure");
      var img = document.createElement("img");
      img.alt = "照片 " + (i + 1);
      img.src = URL.createObjectURL(file);
      img.onload = function () { URL.revokeObjectURL(img.src); };
      var remove = document.createElement("button");
      remove.type = "button";
      remove.setAttribute("aria-label", "删除照片 " + (i + 1));
      remove.textContent = "×";
      remove.addEventListener("click", function () { chosen.splice(i, 1); syncInput(); render(); });
      fig.appendChild(img);
      fig.appendChild(remove);
      previews.appendChild(fig);
    });
    pick.hidden = chosen.length >= maxPhotos;
  }

  input.addEventListener("change", function () {
    var picked = Array.prototype.slice.call(input.files || []);
    if (!canMerge) { chosen = picked; render(); return; }
    var problems = [];
    var total = totalBytes();
    picked.forEach(function (f) {
      if (f.size > maxBytes) problems.push("「" + f.name + "」超过 " + (maxBytes / 1048576) + " MB");
      else if (chosen.length >= maxPhotos) problems.push("最多 " + maxPhotos + " 张照片");
      else if (total + f.size > maxTotal) problems.push("照片总共不超过 " + (maxTotal / 1048576) + " MB，「" + f.name + "」未加入");
      else { chosen.push(f); total += f.size; }
    });
    syncInput();
    render();
    if (problems.length) showError(problems.filter(function (p, i, a) { return a.indexOf(p) === i; }).join("；"));
  });

  function totalBytes() {
    var files = canMerge ? chosen : Array.prototype.slice.call(input.files || []);
    return files.reduce(function (sum, f) { return sum + f.size; }, 0);
  }

  // -- description --
  function countText() { count.textContent = desc.value.trim().length; }
  desc.addEventListener("input", countText);
  countText();

  // -- contact --
  function syncPhone() { phone.disabled = anonymous.checked; if (anonymous.checked) phone.value = ""; }
  anonymous.addEventListener("change", syncPhone);
  syncPhone();

  // -- location --
  document.getElementById("locate").addEventListener("click", function () {
    if (!navigator.geolocation) { locStatus.textContent = "此设备不支持定位，请填写地址"; return; }
    locStatus.textContent = "正在定位…";
    navigator.geolocation.getCurrentPosition(
      function (pos) {
        lat.value = pos.coords.latitude.toFixed(6);
        lng.value = pos.coords.longitude.toFixed(6);
        var acc = Math.round(pos.coords.accuracy || 0);
        locStatus.textContent = "已定位" + (acc ? "（精度约 " + acc + " 米）" : "");
        loadNearby();
      },
      function (err) {
        locStatus.textContent = err.code === 1 ? "未获得定位权限，请填写地址" : "定位失败，请重试或填写地址";
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
    );
  });

  // -- nearby open tips of the same category: "+1" instead of filing again --
  function category() {
    var c = form.querySelector("input[name=category]:checked");
    return c ? c.value : "";
  }

  function loadNearby() {
    if (!lat.value || !lng.value || !category()) { nearby.hidden = true; return; }
    var url = form.dataset.nearbyUrl + "?lat=" + encodeURIComponent(lat.value) + "&lng=" + encodeURIComponent(lng.value) +
      "&category=" + encodeURIComponent(category());
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { tips: [] }; })
      .then(function (data) { showNearby(data.tips || []); })
      .catch(function () { nearby.hidden = true; });
  }

  function showNearby(list) {
    nearbyList.innerHTML = "";
    list.forEach(function (t) {
      var li = document.createElement("li");
      var text = document.createElement("div");
      text.innerHTML = "<div></div><div class=\"hint\"></div>";
      text.firstChild.textContent = t.summary;
      text.lastChild.textContent = "约 " + t.distance + " 米 · " + t.status + " · " + t.support_count + " 人支持";
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "btn secondary";
      btn.textContent = t.own ? "我提交的" : t.supported ? "已支持" : "+1";
      btn.disabled = t.own || t.supported;
      btn.addEventListener("click", function () { support(t, btn, text.lastChild); });
      li.appendChild(text);
      li.appendChild(btn);
      nearbyList.appendChild(li);
    });
    nearby.hidden = list.length === 0;
  }

  function support(t, btn, info) {
    btn.disabled = true;
    fetch(form.dataset.nearbyUrl.replace(/nearby$/, encodeURIComponent(t.no) + "/support"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, Accept: "application/json" },
    })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (!res.ok) { btn.disabled = false; showError(res.body.error || "操作失败，请稍后再试"); return; }
        btn.textContent = "已支持";
        info.textContent = "约 " + t.distance + " 米 · " + t.status + " · " + res.body.support_count + " 人支持";
      })
      .catch(function () { btn.disabled = false; showError("网络不稳定，请稍后再试"); });
  }

  Array.prototype.forEach.call(form.querySelectorAll("input[name=category]"), function (r) {
    r.addEventListener("change", loadNearby);
  });

  // -- submit: the same checks as the server, then one upload with its progress shown; a refusal is shown in place,
  // with every photo and field kept (the submit_key dedupes a second submission anyway) --
  function mb(bytes) { return (bytes / 1048576).toFixed(1); }

  function failed(message) {
    delete form.dataset.sent;
    submit.disabled = false;
    submit.textContent = label;
    progress.hidden = true;
    progressText.textContent = "";
    showError(message);
  }

  function send() {
    var xhr = new XMLHttpRequest();
    var stalled = null;
    // No progress for a minute (a minute more once all is sent and the server saves): stop, and say so.
    function watch(ms) { clearTimeout(stalled); stalled = setTimeout(function () { xhr.abort(); }, ms); }
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (ev) {
      if (!ev.lengthComputable) { watch(60000); return; }  // moving, though its size is unknown
      watch(ev.loaded < ev.total ? 60000 : 120000);
      progress.hidden = false;
      progress.max = ev.total;
      progress.value = ev.loaded;
      progressText.textContent = ev.loaded < ev.total
        ? "正在上传 " + Math.floor(ev.loaded * 100 / ev.total) + "%（" + mb(ev.loaded) + " / " + mb(ev.total) + " MB）"
        : "上传完成，正在保存…";
    };
    xhr.onload = function () {
      clearTimeout(stalled);
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (body && body.url && xhr.status < 300) {
        try { sessionStorage.setItem("tip-filed", body.url); } catch (err) { /* private mode: no reminder */ }
        window.location.assign(body.url);
        return;
      }
      if (body && body.error) { failed(body.error); return; }
      // Not our answer (a proxy's page, a sign-in that expired): no second upload of the same photos.
      failed(xhr.status === 413
        ? "照片总量超过了服务器允许的大小，请删去几张后重新提交"
        : "提交未成功（" + xhr.status + "），请刷新页面后重试。已选的照片和填写的内容都还在。");
    };
    xhr.onerror = function () {
      clearTimeout(stalled);
      failed("网络中断，线索未提交。已选的照片和填写的内容都还在，请在信号较好时重新提交。");
    };
    xhr.onabort = function () {
      failed("上传长时间没有进展，已停止。已选的照片和填写的内容都还在，请在信号较好时重新提交。");
    };
    watch(60000);
    xhr.send(new FormData(form));
  }

  window.addEventListener("pageshow", function () {
    var filed = null;
    try { filed = sessionStorage.getItem("tip-filed"); sessionStorage.removeItem("tip-filed"); } catch (err) { filed = null; }
    if (filed) {
      // Back to the form of a tip just filed: an empty form, and the way to the one sent, not a second copy of it.
      form.reset();
      chosen = [];
      syncInput();
      render();
      lat.value = lng.value = "";
      locStatus.textContent = "未定位";
      // A new key: the old one would hand back the tip just filed instead of filing the next one.
      var key = form.querySelector("input[name=submit_key]");
      var bytes = new Uint8Array(18);
      (window.crypto || window.msCrypto).getRandomValues(bytes);
      key.value = Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
      var note = document.createElement("div");
      note.className = "success";
      note.id = "filed-note";
      note.appendChild(document.createTextNode("刚才的线索已提交成功，"));
      var link = document.createElement("a");
      link.href = filed;
      link.textContent = "查看进展";
      note.appendChild(link);
      note.appendChild(document.createTextNode("。如需举报另一件事，请重新填写。"));
      form.parentNode.insertBefore(note, form);
    }
    // Back from the next page: the browser puts the typed values back after this script first ran.
    countText();
    if (lat.value && locStatus.textContent === "未定位") locStatus.textContent = "已定位";
    if (form.dataset.sent) { delete form.dataset.sent; submit.disabled = false; submit.textContent = label; }
  });

  form.addEventListener("submit", function (e) {
    var message = "";
    var n = canMerge ? chosen.length : (input.files || []).length;
    var text = desc.value.trim();
    if (!category()) message = "请选择线索类别";
    else if (text.length < 5 || text.length > 1000) message = "请用 5 到 1000 个字描述情况";
    else if (n < 1 || n > maxPhotos) message = "请上传 1 到 " + maxPhotos + " 张照片";
    else if (totalBytes() > maxTotal) message = "照片总共不超过 " + (maxTotal / 1048576) + " MB，请删去几张";
    else if (!lat.value && address.value.trim().length < 2) message = "请获取当前位置，或填写事发地址";
    else if (!anonymous.checked && phone.value && !/^1\d{10}$/.test(phone.value.replace(/[\s-]/g, ""))) {
      message = "请填写 11 位手机号码，或留空匿名提交";
    }
    if (message) { e.preventDefault(); showError(message); return; }
    if (form.dataset.sent) { e.preventDefault(); return; }
    form.dataset.sent = "1";
    submit.disabled = true;
    submit.textContent = "正在提交…";
    if (typeof FormData === "function") { e.preventDefault(); send(); }
  });
})();
