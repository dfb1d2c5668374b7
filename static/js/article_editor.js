// A small contenteditable editor: toolbar commands, column template, image upload, photos from the material
// library; the server cleans the HTML.
(function () {
  "use strict";
  var form = document.getElementById("article-form");
  var editor = document.getElementById("editor");
  var hidden = document.getElementById("body-html");
  if (!form || !editor || !hidden) return;
  document.querySelectorAll("#editor-toolbar [data-cmd]").forEach(function (button) {
    button.addEventListener("click", function () {
      editor.focus();
      document.execCommand(button.dataset.cmd, false, button.dataset.arg || null);
    });
  });
  var insert = document.getElementById("insert-template");
  var select = document.getElementById("column-select");
  if (insert && select) {
    insert.addEventListener("click", function () {
      var option = select.options[select.selectedIndex];
      if (!option || !option.dataset.template) return;
      // An empty <p></p> has no height in a contenteditable: nobody could click into the skeleton's sections.
      editor.innerHTML += option.dataset.template.replace(/<p>\s*<\/p>/g, "<p><br></p>");
    });
  }
  var file = document.getElementById("body-image");
  if (file) {
    file.addEventListener("change", function () {
      if (!file.files.length) return;
      var data = new FormData();
      data.append("image", file.files[0]);
      data.append("csrf_token", form.querySelector("[name=csrf_token]").value);
      fetch(file.dataset.url, { method: "POST", body: data, credentials: "same-origin" })
        .then(function (res) { return res.json(); })
        .then(function (json) {
          if (json.url) {
            var img = document.createElement("img");
            img.src = json.url;
            editor.appendChild(img);
          } else {
            alert(json.error || "上传失败");
          }
          file.value = "";
        });
    });
  }
  // The hidden field follows the editor as it changes, so that what the browser keeps of the form when the page is
  // left (Back after 保存, a link, a reload) holds the body too; on return the kept body goes back into the editor,
  // which the browser does not restore itself (a refused save then said 正文不能为空 with the text gone).
  function sync() { hidden.value = editor.innerHTML; }
  function restore() {
    if (hidden.value !== hidden.defaultValue && hidden.value !== editor.innerHTML) editor.innerHTML = hidden.value;
  }
  editor.addEventListener("input", sync);
  window.addEventListener("pagehide", sync);
  window.addEventListener("pageshow", restore);
  form.addEventListener("submit", sync);

  // -- the material library picker: a photo into the body at the cursor, or as the cover ---------------------------
  var dialog = document.getElementById("library-dialog");
  if (!dialog) return;
  var grid = document.getElementById("library-grid");
  var filter = document.getElementById("library-filter");
  var more = document.getElementById("library-more");
  var empty = document.getElementById("library-empty");
  var error = document.getElementById("library-error");
  var coverItem = document.getElementById("cover-item");
  var coverFile = document.getElementById("cover-file");
  var picked = document.getElementById("cover-picked");
  var saved = null;  // the editor's last selection: opening the dialog moves the focus away from it
  var next = null;

  function remember() {
    var sel = window.getSelection();
    if (sel.rangeCount && editor.contains(sel.getRangeAt(0).commonAncestorContainer)) {
      saved = sel.getRangeAt(0).cloneRange();
    }
  }
  document.addEventListener("selectionchange", remember);

  function insertAtCursor(node) {
    if (saved && editor.contains(saved.commonAncestorContainer)) {
      saved.deleteContents();
      saved.insertNode(node);
      saved.setStartAfter(node);
      saved.collapse(true);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(saved);
    } else {
      editor.appendChild(node);
    }
  }

  function inEditor(id) {
    return !!editor.querySelector('img[src*="/articles/library/' + id + '/"]');
  }

  function markInBody(button) {
    button.textContent = "已在正文中";
    button.disabled = true;
  }

  function showError(text) {
    error.textContent = text || "";
    error.hidden = !text;
  }

  function card(item) {
    var box = document.createElement("div");
    box.className = "library-card";
    box.dataset.id = item.id;
    var img = document.createElement("img");
    img.src = item.thumb;
    img.alt = item.caption || "现场照片";
    img.loading = "lazy";
    var meta = document.createElement("div");
    meta.textContent = [item.unit, item.date].filter(Boolean).join(" · ") + (item.starred ? " ★" : "") +
      (item.used ? " · 已用于文章" : "");
    var caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = item.caption || "（无说明）";
    caption.title = item.caption || "";
    var actions = document.createElement("div");
    actions.className = "actions";
    // A photo the body already holds is not offered again (the save would refuse the article with it twice).
    var inBody = inEditor(item.id);
    [[inBody ? "已在正文中" : "插入正文", "body"], ["设为封面", "cover"]].forEach(function (pair) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn small" + (pair[1] === "cover" ? " secondary" : "");
      button.textContent = pair[0];
      button.dataset.action = pair[1];
      button.disabled = pair[1] === "body" && !!inBody;
      actions.appendChild(button);
    });
    box.append(img, meta, caption, actions);
    return box;
  }

  var latest = 0;  // only the newest request's answer is shown: a filter applied while 「更早」 loads wins

  function load(before) {
    var ticket = ++latest;
    var params = new URLSearchParams(new FormData(filter));
    if (before) params.set("before", before);
    more.hidden = true;
    showError("");
    return fetch(dialog.dataset.url + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (res) {
        if (!res.ok) throw new Error("素材库加载失败（" + res.status + "）");
        return res.json();
      })
      .then(function (json) {
        if (ticket !== latest) return;
        if (!before) grid.innerHTML = "";  // not replaceChildren(): older Chromium builds on office desktops
        json.items.forEach(function (item) { grid.appendChild(card(item)); });
        next = json.next_before;
        more.hidden = !next;
        empty.hidden = grid.children.length > 0;
      })
      .catch(function (err) { if (ticket === latest) showError(err.message); });
  }

  var inserted = document.getElementById("library-inserted");
  var insertedCount = 0;  // photos put into the body since the dialog opened

  function open() {
    remember();
    insertedCount = 0;
    inserted.hidden = true;
    dialog.showModal();
    load(null);
  }
  document.getElementById("library-open").addEventListener("click", open);
  document.getElementById("cover-library").addEventListener("click", open);
  // After photos went in: back in the editor after the last one, to go on typing there.
  function backToEditor() {
    if (!insertedCount || dialog.open) return;
    insertedCount = 0;
    editor.focus();
    if (saved && editor.contains(saved.commonAncestorContainer)) {
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(saved);
    }
  }
  document.getElementById("library-close").addEventListener("click", function () {
    dialog.close();
    backToEditor();  // now, not on the close event, which comes a task later: a key typed at once goes in the body
  });
  dialog.addEventListener("close", backToEditor);  // Esc, 设为封面
  filter.addEventListener("submit", function (event) {
    event.preventDefault();
    load(null);
  });
  more.addEventListener("click", function () { load(next); });

  function setCover(id, thumb) {
    coverItem.value = id;
    coverFile.value = "";  // one cover: the library photo replaces a file chosen before
    document.getElementById("cover-picked-img").src = thumb;
    document.getElementById("cover-picked-text").textContent = "封面：素材 #" + id + "（使用封面版本，保存后生效）";
    picked.hidden = false;
  }
  document.getElementById("cover-picked-clear").addEventListener("click", function () {
    coverItem.value = "";
    picked.hidden = true;
  });
  coverFile.addEventListener("change", function () {
    if (coverFile.files.length) {
      coverItem.value = "";
      picked.hidden = true;
    }
  });

  grid.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var box = button.closest(".library-card");
    if (button.dataset.action === "cover") {
      setCover(box.dataset.id, box.querySelector("img").src);
      dialog.close();
      return;
    }
    var data = new FormData();
    data.append("csrf_token", form.querySelector("[name=csrf_token]").value);
    button.disabled = true;
    showError("");
    fetch(dialog.dataset.bodyUrl.replace("/0/body", "/" + box.dataset.id + "/body"), {
      method: "POST", body: data, credentials: "same-origin"
    })
      .then(function (res) {
        return res.json().catch(function () { return { error: "插入失败（" + res.status + "）" }; });
      })
      .then(function (json) {
        button.disabled = false;
        if (!json.url) {
          showError(json.error || "插入失败");
          return;
        }
        if (inEditor(box.dataset.id)) {  // already there (a slow answer to an earlier click): never twice
          markInBody(button);
          return;
        }
        var img = document.createElement("img");
        img.src = json.url;
        // Not the caption: an officer's note (a plate number, a name) would go out unseen in the published article.
        img.alt = "现场照片";
        // The dialog stays open for more photos; each goes after the one before, at the cursor the editor had.
        insertAtCursor(img);
        sync();
        markInBody(button);
        insertedCount += 1;
        inserted.textContent = "已插入 " + insertedCount + " 张照片到正文，可继续选择，选好后点「完成」";
        inserted.hidden = false;
      })
      .catch(function () {
        button.disabled = false;
        showError("网络错误，请重试");
      });
  });
})();
