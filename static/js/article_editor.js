// A small contenteditable editor: toolbar commands, column template, image upload; the server cleans the HTML.
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
  form.addEventListener("submit", function () { hidden.value = editor.innerHTML; });
})();
