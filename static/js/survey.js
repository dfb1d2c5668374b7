// Survey: every required question left blank is marked at once, before anything is sent (the server checks again).
(function () {
  "use strict";
  var form = document.querySelector("form.survey");
  if (!form) return;
  var box = document.getElementById("survey-error");

  function answered(fieldset) {
    if (fieldset.querySelector("input:checked")) return true;
    var text = fieldset.querySelector("textarea");
    return !!(text && text.value.trim());
  }

  form.addEventListener("change", function (e) {
    var fieldset = e.target.closest("fieldset");
    if (fieldset && answered(fieldset)) fieldset.classList.remove("missing");
  });

  form.addEventListener("submit", function (e) {
    var blank = Array.prototype.filter.call(form.querySelectorAll("fieldset[data-required='1']"), function (f) {
      return !answered(f);
    });
    form.querySelectorAll("fieldset.missing").forEach(function (f) { f.classList.remove("missing"); });
    if (!blank.length) return;
    e.preventDefault();
    blank.forEach(function (f) { f.classList.add("missing"); });
    var numbers = blank.map(function (f) { return f.dataset.position; }).join("、");
    box.textContent = "还有 " + blank.length + " 道题未回答：第 " + numbers + " 题，请补充后再提交";
    box.hidden = false;
    blank[0].scrollIntoView({ block: "center" });
  });

  // The server's refusal of a background send (submit_once.js) names the questions it found blank.
  form.addEventListener("refused", function (e) {
    (e.detail.missing || []).forEach(function (id) {
      var fieldset = document.getElementById("q" + id);
      if (fieldset) fieldset.classList.add("missing");
    });
  });
})();
