// Drag on a picture to mark a region: the crop and blur boxes of a material, the masked area of a tip photo. It
// fills the form's fields, which stay editable by hand; the server checks them as typed values.
(function () {
  "use strict";
  function clamp(v) { return Math.min(1, Math.max(0, v)); }
  function round(v) { return Math.round(v * 10000) / 10000; }

  Array.prototype.forEach.call(document.querySelectorAll("[data-region-picker]"), function (box) {
    var img = box.querySelector("img");
    var form = box.closest("form") || document.getElementById(box.dataset.form);
    if (!img || !form) return;
    var field = function (selector) { return selector ? form.querySelector(selector) : null; };
    var crop = field(box.dataset.crop), blur = field(box.dataset.blur);
    var percent = box.dataset.percent === "1";  // x, y, w, h fields in per cent (one region)
    var layer = document.createElement("div");
    layer.className = "region-layer";
    box.appendChild(layer);
    var regions = { crop: [], blur: [], mask: [] };

    function kind() {
      if (percent) return "mask";
      var picked = form.querySelector("input[name=region_mode]:checked");
      return picked ? picked.value : "crop";
    }

    function draw(extra) {
      layer.innerHTML = "";
      Object.keys(regions).forEach(function (k) {
        regions[k].concat(extra && extra.kind === k ? [extra.box] : []).forEach(function (q) {
          var d = document.createElement("div");
          d.className = "region " + k;
          d.style.left = q[0] * 100 + "%";
          d.style.top = q[1] * 100 + "%";
          d.style.width = q[2] * 100 + "%";
          d.style.height = q[3] * 100 + "%";
          layer.appendChild(d);
        });
      });
    }

    function write() {
      if (crop) crop.value = regions.crop.length ? JSON.stringify(regions.crop[0].map(round)) : "";
      if (blur) blur.value = regions.blur.length ? JSON.stringify(regions.blur.map(function (q) { return q.map(round); })) : "";
      if (percent) {
        var q = regions.mask[0];
        ["x", "y", "w", "h"].forEach(function (name, i) {
          form.querySelector("[name=" + name + "]").value = q ? (q[i] * 100).toFixed(1) : "";
        });
      }
    }

    var typed = percent ? ["x", "y", "w", "h"].map(function (name) { return form.querySelector("[name=" + name + "]"); }) : [];

    function read() {  // what was typed by hand, drawn
      try { regions.crop = crop && crop.value.trim() ? [JSON.parse(crop.value)] : []; } catch (e) { regions.crop = []; }
      try { regions.blur = blur && blur.value.trim() ? JSON.parse(blur.value) : []; } catch (e) { regions.blur = []; }
      if (percent) {
        var q = typed.map(function (input) { return parseFloat(input.value) / 100; });
        regions.mask = q.every(function (v) { return v >= 0; }) ? [q] : [];  // NaN (a blank field) is not >= 0
      }
      draw();
    }
    [crop, blur].concat(typed).forEach(function (input) { if (input) input.addEventListener("change", read); });

    function at(e) {
      var r = img.getBoundingClientRect();
      return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
    }

    var start = null, current = null;
    img.draggable = false;
    img.addEventListener("pointerdown", function (e) {
      e.preventDefault();
      start = at(e);
      current = null;
      img.setPointerCapture(e.pointerId);
    });
    img.addEventListener("pointermove", function (e) {
      if (!start) return;
      var p = at(e);
      current = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.abs(p[0] - start[0]), Math.abs(p[1] - start[1])];
      draw({ kind: kind(), box: current });
    });
    img.addEventListener("pointerup", function () {
      start = null;
      if (!current || current[2] < 0.01 || current[3] < 0.01) { current = null; draw(); return; }  // a click, not a drag
      var k = kind();
      if (k === "blur") regions.blur.push(current); else regions[k] = [current];
      current = null;
      draw();
      write();
    });

    var clear = form.querySelector("[data-region-clear]");
    if (clear) clear.addEventListener("click", function () { regions[kind()] = []; draw(); write(); });
    read();
  });
})();
