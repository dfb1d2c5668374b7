// Vote buttons: post in the background, show the answer next to the button and the new counts and ranking at once;
// the form still works without JS.
(function () {
  'use strict';
  function show(box, text, ok) {
    box.innerHTML = '';
    var div = document.createElement('div');
    div.className = ok ? 'success' : 'error';
    div.textContent = text;
    box.appendChild(div);
  }

  // The box at the top is the live region (read out once); on a long list it is off-screen, so the tapped
  // candidate's card shows the answer too.
  function answer(form, text, ok) {
    var box = document.querySelector('.vote-message');
    var card = form.closest('.candidate');
    var note = card && card.querySelector('.vote-note');
    if (!box && !note) { alert(text); return; }
    if (box) { show(box, text, ok); }
    document.querySelectorAll('.vote-note').forEach(function (el) { el.hidden = true; });
    if (note) {
      show(note, text, ok);
      note.hidden = false;
      if (box) { box.classList.add('sr-only'); }  // shown beside the button: the top box is only read out
    }
  }

  // The same order as the server's ranking: most votes first, ties in the page's (the campaign's) order.
  function rerank(counts) {
    var list = document.querySelector('[data-ranking]');
    if (!list) { return; }
    var rows = [];
    document.querySelectorAll('.candidate[data-candidate]').forEach(function (card, i) {
      rows.push({name: card.dataset.name, votes: Number(counts[card.dataset.candidate] || 0), order: i});
    });
    rows.sort(function (a, b) { return b.votes - a.votes || a.order - b.order; });
    list.innerHTML = '';
    rows.slice(0, 10).forEach(function (row, i) {
      var li = document.createElement('li');
      // a tie shares its place (1, 1, 3), as the server's ranking and the console number it
      row.rank = i > 0 && row.votes === rows[i - 1].votes ? rows[i - 1].rank : i + 1;
      li.value = row.rank;
      li.appendChild(document.createTextNode(row.name + ' '));
      var votes = document.createElement('span');
      votes.className = 'hint';
      votes.textContent = row.votes + ' 票';
      li.appendChild(votes);
      list.appendChild(li);
    });
  }

  // A button that can no longer vote says why, instead of refusing after a tap.
  function close(button, text) {
    button.disabled = true;
    button.type = 'button';
    button.textContent = text;
  }

  function setCount(id, n) {
    document.querySelectorAll('[data-count="' + id + '"]').forEach(function (el) { el.textContent = n; });
  }

  document.querySelectorAll('form.vote-form').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button');
      if (button.disabled) { return; }
      var label = button.textContent;
      var closed = false;
      button.disabled = true; // a double tap sends one request; the server counts once anyway
      button.textContent = '投票中…';
      fetch(form.action, {
        method: 'POST', body: new FormData(form), credentials: 'same-origin',
        headers: {'Accept': 'application/json', 'X-Requested-With': 'fetch'}
      }).then(function (res) {
        return res.json().catch(function () { return {ok: false, error: '服务繁忙，请稍后再试'}; });
      }).then(function (data) {
        answer(form, data.ok ? data.message : data.error, data.ok);
        if (!data.ok && data.closes) {
          // refused for the day or for good (used up in another tab, the vote ended while the page was open)
          var buttons = data.closes[0] === 'all' ? document.querySelectorAll('form.vote-form button[type=submit]') : [button];
          Array.prototype.forEach.call(buttons, function (b) { close(b, data.closes[1]); });
          closed = true;
        }
        if (data.ok) {
          var id = form.querySelector('[name=candidate_id]').value;
          // counts come only when the results policy shows them
          if (data.counts) {
            Object.keys(data.counts).forEach(function (cid) { setCount(cid, data.counts[cid]); });
            rerank(data.counts);
          } else if (data.count !== null && data.count !== undefined) {
            setCount(id, data.count);
          }
          document.querySelectorAll('.remaining').forEach(function (el) { el.textContent = data.remaining; });
          if (data.remaining === 0) {
            document.querySelectorAll('form.vote-form button[type=submit]').forEach(function (b) {
              close(b, '今日票已投完');
            });
            closed = true;
          } else if (data.candidate_done) {
            close(button, '今天已投过 TA');
            closed = true;
          }
        }
      }).catch(function () {
        answer(form, navigator.onLine === false ? '手机没有连上网络，请检查网络后再投' : '网络不稳定，投票未送达，请稍后再试', false);
      }).then(function () {
        if (closed) { return; }
        button.textContent = label;
        setTimeout(function () { button.disabled = false; }, 800);
      });
    });
  });
})();
