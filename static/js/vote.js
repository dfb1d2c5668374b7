// Vote buttons: post in the background, show the answer and the new count at once; the form still works without JS.
(function () {
  'use strict';
  function show(box, text, ok) {
    if (!box) { alert(text); return; }
    box.innerHTML = '';
    var div = document.createElement('div');
    div.className = ok ? 'success' : 'error';
    div.textContent = text;
    box.appendChild(div);
  }
  document.querySelectorAll('form.vote-form').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button');
      if (button.disabled) { return; }
      button.disabled = true; // a double tap sends one request; the server counts once anyway
      var box = document.querySelector('.vote-message');
      fetch(form.action, {
        method: 'POST', body: new FormData(form), credentials: 'same-origin',
        headers: {'Accept': 'application/json', 'X-Requested-With': 'fetch'}
      }).then(function (res) {
        return res.json().catch(function () { return {ok: false, error: '网络繁忙，请稍后再试'}; });
      }).then(function (data) {
        show(box, data.ok ? data.message : data.error, data.ok);
        if (data.ok) {
          var id = form.querySelector('[name=candidate_id]').value;
          if (data.count !== null && data.count !== undefined) {
            document.querySelectorAll('[data-count="' + id + '"]').forEach(function (el) { el.textContent = data.count; });
          }
          document.querySelectorAll('.remaining').forEach(function (el) { el.textContent = data.remaining; });
        }
      }).catch(function () {
        show(box, '网络繁忙，请稍后再试', false);
      }).then(function () {
        setTimeout(function () { button.disabled = false; }, 800);
      });
    });
  });
})();
