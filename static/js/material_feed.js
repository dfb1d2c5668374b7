// Material library: poll the feed for new photos and prepend them without reloading.
(function () {
  "use strict";
  var grid = document.getElementById("material-grid");
  if (!grid) return;
  var lastId = parseInt(grid.getAttribute("data-last-id") || "0", 10);
  var feedUrl = grid.getAttribute("data-feed-url");
  if (!feedUrl) return; // an older page: nothing new is prepended there
  var status = document.getElementById("feed-status");

  function card(item) {
    var a = document.createElement("a");
    a.className = "material-card new";
    a.href = item.url;
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
    var meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = item.unit + " · " + item.uploader + " · " + item.time + (item.count > 1 ? " · 相似 " + item.count + " 张" : "");
    a.appendChild(meta);
    if (item.place) {
      var place = document.createElement("div");
      place.className = "meta";
      place.textContent = "📍 " + item.place;
      a.appendChild(place);
    }
    return a;
  }

  function poll() {
    var sep = feedUrl.indexOf("?") >= 0 ? "&" : "?";
    fetch(feedUrl + sep + "after=" + lastId, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) { return res.ok ? res.json() : Promise.reject(res.status); })
      .then(function (data) {
        data.items.slice().reverse().forEach(function (item) { grid.insertBefore(card(item), grid.firstChild); });
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
