// Material library: poll the feed for new photos and prepend them without reloading; a card still 处理中 becomes the
// photo once it is processed, or goes away if the photo was refused (it is listed among those not saved on reload).
(function () {
  "use strict";
  var grid = document.getElementById("material-grid");
  if (!grid) return;
  var lastId = parseInt(grid.getAttribute("data-last-id") || "0", 10);
  var feedUrl = grid.getAttribute("data-feed-url");
  if (!feedUrl) return; // an older page: nothing new is prepended there
  var status = document.getElementById("feed-status");

  function line(text) {
    var div = document.createElement("div");
    div.className = "meta";
    div.textContent = text;
    return div;
  }

  function badge(text) {
    var span = document.createElement("span");
    span.className = "badge";
    span.textContent = text;
    return span;
  }

  // The same card as the page's own (material_list.html).
  function card(item) {
    var a = document.createElement("a");
    a.className = "material-card new";
    a.href = item.url;
    a.dataset.id = item.id;
    if (item.thumb) {
      var img = document.createElement("img");
      img.src = item.thumb;
      img.alt = item.caption || "现场照片";
      img.loading = "lazy";
      a.appendChild(img);
    } else {
      var pending = document.createElement("div");
      pending.className = "pending";
      pending.textContent = item.state;
      a.appendChild(pending);
    }
    a.appendChild(line(item.unit + " · " + item.uploader + " · " + item.time + (item.count > 1 ? " · 相似 " + item.count + " 张" : "")));
    if (item.place) a.appendChild(line("📍 " + item.place));
    if (item.caption) a.appendChild(line(item.caption));
    var badges = line("");
    if (item.starred) badges.appendChild(badge("★ 星标"));
    if (item.used) badges.appendChild(badge("已用于文章"));
    a.appendChild(badges);
    return a;
  }

  function shown(id) {
    return grid.querySelector('.material-card[data-id="' + id + '"]');
  }

  function pendingIds() {
    return Array.prototype.map.call(grid.querySelectorAll(".material-card .pending"), function (el) {
      return el.parentNode.dataset.id;
    });
  }

  function poll() {
    var sep = feedUrl.indexOf("?") >= 0 ? "&" : "?";
    var url = feedUrl + sep + "after=" + lastId + "&pending=" + pendingIds().join(",");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) { return res.ok ? res.json() : Promise.reject(res.status); })
      .then(function (data) {
        data.items.slice().reverse().forEach(function (item) {
          if (!shown(item.id)) grid.insertBefore(card(item), grid.firstChild);
        });
        (data.ready || []).forEach(function (item) {
          var old = shown(item.id);
          if (old) grid.replaceChild(card(item), old);
        });
        (data.gone || []).forEach(function (id) {
          var old = shown(id);
          if (old) old.remove();
        });
        var empty = document.getElementById("material-empty");
        if (empty && data.items.length) empty.remove(); // the first photo has arrived
        if (data.last_id > lastId) lastId = data.last_id;
        if (status) status.textContent = "实时更新中";
      })
      .catch(function () { if (status) status.textContent = "连接中断，稍后重试…"; })
      .then(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 5000);
})();
