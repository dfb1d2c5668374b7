/* Custom menu editor: a form tree, the same checks as server/services/menus.py (for instant feedback; the
   server decides), and a live preview of the menu at the bottom of a WeChat chat. Vanilla JS, no framework. */
(function () {
  'use strict';

  // Confirmation for forms and submit buttons marked data-confirm (editor, history and version pages).
  function confirmed(e) {
    var src = (e.submitter && e.submitter.dataset.confirm) ? e.submitter : e.target;
    return !(src.dataset && src.dataset.confirm) || window.confirm(src.dataset.confirm);
  }
  document.addEventListener('submit', function (e) {
    if (e.target.id !== 'menu-form' && !confirmed(e)) e.preventDefault();  // the editor's form asks itself
  });

  var dataEl = document.getElementById('menu-data');
  if (!dataEl) return;
  var cfg = JSON.parse(dataEl.textContent);
  var L = cfg.limits, FIELDS = cfg.fields, FIELD_LABELS = cfg.field_labels;
  var TYPE_LABELS = {};
  cfg.types.forEach(function (t) { TYPE_LABELS[t.value] = t.label; });
  var ALL_FIELDS = ['key', 'url', 'appid', 'pagepath', 'media_id', 'article_id'];
  var KEY_HELP = {
    key: '按钮标识，英文数字，菜单内不能重复',
    url: '以 http:// 或 https:// 开头',
    appid: '小程序的 AppID（须已关联本公众号）',
    pagepath: '如 pages/index/index',
    media_id: '永久素材的 media_id',
    article_id: '已发布文章的 article_id'
  };
  var encoder = new TextEncoder();
  var uid = 0;

  function bytes(s) { return encoder.encode(s).length; }
  function str(v) { return typeof v === 'string' ? v : (v == null ? '' : String(v)); }
  function isObj(v) { return v && typeof v === 'object' && !Array.isArray(v); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'class') node.className = attrs[k];
      else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== false && attrs[k] != null) node.setAttribute(k, attrs[k] === true ? '' : attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }
  // Keys the system answers itself (EVENTS_LIST: the open events); a reply typed for one would never be sent.
  var BUILTIN = cfg.builtin || [];
  var BUILTIN_NOTE = '此按钮标识由系统自动回复（如近期活动列表），无需填写点击后回复。';
  function builtin(n) { return BUILTIN.indexOf(n.key.trim()) >= 0; }
  function newKey() { return 'MENU_' + Date.now().toString(36).toUpperCase() + (uid++); }

  // ---- state: every field is kept while editing (switching type loses nothing); serialize() keeps what WeChat reads
  function toNode(b) {
    var node = {uid: uid++, name: str(b.name), type: str(b.type), reply: '', locked: false, sub_button: []};
    ALL_FIELDS.forEach(function (f) { node[f] = str(b[f]); });
    var known = (cfg.replies || {})[node.key];
    if (cfg.texts && typeof cfg.texts[node.key] === 'string') node.reply = cfg.texts[node.key];
    else if (known) node.reply = known.text || '';
    node.locked = !!(known && !known.editable);
    return node;
  }
  var buttons = (Array.isArray(cfg.buttons) ? cfg.buttons : []).filter(isObj).map(function (b) {
    var node = toNode(b);
    node.sub_button = (Array.isArray(b.sub_button) ? b.sub_button : []).filter(isObj).map(toNode);
    if (node.sub_button.length) node.type = '';
    return node;
  });

  function leafOut(n) {
    var out = {name: n.name.trim(), type: n.type};
    (FIELDS[n.type] || []).forEach(function (f) { out[f] = n[f].trim(); });
    return out;
  }
  function serialize() {
    var replies = {};
    var out = buttons.map(function (b) {
      if (b.sub_button.length) return {name: b.name.trim(), sub_button: b.sub_button.map(leafOut)};
      return leafOut(b);
    });
    eachLeaf(function (n) { if (n.type === 'click' && !n.locked && !builtin(n) && n.reply.trim()) replies[n.key.trim()] = n.reply; });
    return {buttons: out, replies: replies};
  }
  function eachLeaf(fn) {
    buttons.forEach(function (b) { if (b.sub_button.length) b.sub_button.forEach(fn); else fn(b); });
  }

  // ---- validation: mirrors validate_menu (same wording), but collects every problem
  function label(i, name, j, subName) {
    var one = function (text, value) { value = value.trim(); return value ? text + '「' + value + '」' : text; };
    var top = one('第 ' + i + ' 个一级菜单', name);
    return j == null ? top : top + '的' + one('第 ' + j + ' 个子菜单', subName);
  }
  function validate() {
    var problems = [], keys = {}, domains = {};
    function add(node, field, msg) { problems.push({uid: node && node.uid, field: field, msg: msg}); }
    if (!buttons.length) add(null, null, '菜单至少需要 1 个一级菜单');
    if (buttons.length > L.top) add(null, null, '一级菜单最多 ' + L.top + ' 个（当前 ' + buttons.length + ' 个）');
    function checkName(lab, node, limit) {
      var name = node.name.trim();
      if (!name) add(node, 'name', lab + '：名称不能为空');
      else if (bytes(name) > limit) {
        add(node, 'name', lab + '：名称超过 ' + limit + ' 字节（当前 ' + bytes(name) + ' 字节，一个汉字占 3 字节）');
      }
    }
    function checkLeaf(lab, node) {
      if (!node.type) { add(node, 'type', lab + '：请选择菜单类型，或添加子菜单'); return; }
      if (!FIELDS[node.type]) { add(node, 'type', lab + '：不支持的菜单类型「' + node.type + '」'); return; }
      FIELDS[node.type].forEach(function (f) {
        var value = node[f].trim();
        if (!value) {
          add(node, f, lab + '：缺少' + FIELD_LABELS[f] + '（「' + TYPE_LABELS[node.type] + '」类型必填）');
        } else if (f === 'key') {
          if (bytes(value) > L.key) add(node, f, lab + '：按钮标识 key 超过 ' + L.key + ' 字节（当前 ' + bytes(value) + ' 字节）');
          else if (keys[value]) add(node, f, lab + '：按钮标识「' + value + '」与' + keys[value] + '重复');
          else keys[value] = lab;
        } else if (f === 'url') {
          var host = null;
          try { var u = new URL(value); if (/^https?:$/.test(u.protocol)) host = u.hostname; } catch (err) { host = null; }
          if (bytes(value) > L.url) add(node, f, lab + '：网页链接 url 超过 ' + L.url + ' 字节（当前 ' + bytes(value) + ' 字节）');
          else if (!host || !/^https?:\/\//i.test(value)) add(node, f, lab + '：网页链接 url 须以 http:// 或 https:// 开头，并包含域名');
          else domains[host] = true;
        }
      });
      if (node.type === 'click' && !node.locked && !builtin(node) && bytes(node.reply.trim()) > L.reply) {
        add(node, 'reply', '菜单「' + node.name.trim() + '」的回复内容超过 ' + L.reply + ' 字节（当前 ' + bytes(node.reply.trim()) + ' 字节）');
      }
    }
    buttons.forEach(function (b, i) {
      var lab = label(i + 1, b.name);
      checkName(lab, b, L.top_name);
      if (!b.sub_button.length) { checkLeaf(lab, b); return; }
      if (b.sub_button.length > L.sub) add(b, null, lab + '：子菜单最多 ' + L.sub + ' 个（当前 ' + b.sub_button.length + ' 个）');
      b.sub_button.forEach(function (s, j) {
        var subLab = label(i + 1, b.name, j + 1, s.name);
        checkName(subLab, s, L.sub_name);
        checkLeaf(subLab, s);
      });
    });
    var hosts = Object.keys(domains).sort();
    if (hosts.length > L.domains) {
      add(null, null, '菜单中的网页链接最多指向 ' + L.domains + ' 个不同域名（当前 ' + hosts.length + ' 个：' + hosts.join('、') + '）');
    }
    return problems;
  }

  // ---- the phone preview
  var preview = document.getElementById('menu-preview');
  var openCol = null, lastTap = null;

  function effect(n) {
    if (n.type === 'click') {
      if (builtin(n)) return {note: BUILTIN_NOTE};
      if (n.locked) return {reply: '（图片或图文回复，在「自动回复」中设置）'};
      return n.reply.trim() ? {reply: n.reply.trim()} : {note: '未设置回复：用户点击后公众号不会回应'};
    }
    var notes = {
      view: '打开网页 ' + n.url, miniprogram: '打开小程序 ' + n.appid + ' ' + n.pagepath,
      scancode_push: '打开扫一扫', scancode_waitmsg: '打开扫一扫，并显示「消息接收中」',
      pic_sysphoto: '打开相机，照片发给公众号', pic_photo_or_album: '选择拍照或相册，照片发给公众号',
      pic_weixin: '打开微信相册，照片发给公众号', location_select: '打开位置选择，位置发给公众号',
      media_id: '发送素材 ' + n.media_id, view_limited: '打开图文素材 ' + n.media_id,
      article_id: '发送文章 ' + n.article_id, article_view_limited: '打开文章 ' + n.article_id
    };
    return {note: notes[n.type] || '未选择类型'};
  }
  function renderPreview() {
    if (!preview) return;
    var chat = el('div', {class: 'phone-chat'});
    if (lastTap) {
      var fx = effect(lastTap);
      chat.appendChild(el('div', {class: 'phone-note', text: '点击「' + (lastTap.name.trim() || '未命名') + '」'}));
      if (fx.reply) chat.appendChild(el('div', {class: 'phone-bubble', text: fx.reply}));
      else chat.appendChild(el('div', {class: 'phone-note', text: fx.note}));
    } else {
      chat.appendChild(el('div', {class: 'phone-note', text: '点击下方菜单试试'}));
    }
    var bar = el('div', {class: 'phone-menu'}, [el('span', {class: 'phone-kb', title: '切换到键盘', text: '⌨'})]);
    buttons.slice(0, L.top).forEach(function (b) {
      var hasSubs = b.sub_button.length > 0;
      var col = el('div', {class: 'phone-col' + (openCol === b.uid ? ' open' : '')});
      var tap = el('button', {type: 'button', class: 'phone-tap', onclick: function () {
        if (hasSubs) { openCol = openCol === b.uid ? null : b.uid; } else { openCol = null; lastTap = b; }
        renderPreview();
      }}, [hasSubs ? el('span', {class: 'phone-icon', text: '≡'}) : null, b.name.trim() || '未命名']);
      col.appendChild(tap);
      if (hasSubs && openCol === b.uid) {
        var pop = el('div', {class: 'phone-pop'});
        b.sub_button.forEach(function (s) {
          pop.appendChild(el('button', {type: 'button', class: 'phone-sub', text: s.name.trim() || '未命名', onclick: function () {
            openCol = null; lastTap = s; renderPreview();
          }}));
        });
        col.appendChild(pop);
      }
      bar.appendChild(col);
    });
    preview.innerHTML = '';
    preview.appendChild(el('div', {class: 'phone'}, [
      el('div', {class: 'phone-top', text: '城管宣传公众号'}), chat, bar
    ]));
  }

  // ---- the form tree
  var editor = document.getElementById('menu-editor');
  var form = document.getElementById('menu-form');
  var problemsList = document.getElementById('menu-problems');
  var payload = document.getElementById('menu-payload');
  var dirty = false;

  function move(list, i, by) {
    var j = i + by;
    if (j < 0 || j >= list.length) return;
    var tmp = list[i]; list[i] = list[j]; list[j] = tmp;
    render();
  }
  function tools(list, i, what) {
    return el('span', {class: 'me-tools'}, [
      el('button', {type: 'button', class: 'btn small secondary', title: '上移', 'aria-label': '上移' + what, disabled: i === 0,
        onclick: function () { move(list, i, -1); }, text: '↑'}),
      el('button', {type: 'button', class: 'btn small secondary', title: '下移', 'aria-label': '下移' + what,
        disabled: i === list.length - 1, onclick: function () { move(list, i, 1); }, text: '↓'}),
      el('button', {type: 'button', class: 'btn small danger', onclick: function () {
        var n = list[i];
        if ((n.name.trim() || n.sub_button.length) && !window.confirm('删除「' + (n.name.trim() || what) + '」' + (n.sub_button.length ? '及其子菜单' : '') + '？')) return;
        list.splice(i, 1); render();
      }, text: '删除'})
    ]);
  }
  function textField(node, field, text, opts) {
    opts = opts || {};
    var input = el(opts.multiline ? 'textarea' : 'input', {
      type: opts.multiline ? null : 'text', 'data-uid': node.uid, 'data-field': field, placeholder: opts.placeholder || ''
    });
    input.value = node[field];
    var counter = opts.limit ? el('span', {class: 'me-count'}) : null;
    function count() { if (counter) counter.textContent = bytes(node[field].trim()) + '/' + opts.limit + ' 字节'; }
    count();
    input.addEventListener('input', function () { node[field] = input.value; count(); changed(); });
    return el('label', {class: 'me-field'}, [el('span', {class: 'me-label', text: text}), input,
      opts.help || counter ? el('span', {class: 'me-help'}, [opts.help || '', counter ? ' ' : '', counter]) : null]);
  }
  function leafFields(node) {
    var select = el('select', {'data-uid': node.uid, 'data-field': 'type'});
    if (!node.type) select.appendChild(el('option', {value: '', text: '请选择'}));
    if (node.type && !TYPE_LABELS[node.type]) select.appendChild(el('option', {value: node.type, text: '不支持：' + node.type}));
    cfg.types.forEach(function (t) { select.appendChild(el('option', {value: t.value, text: t.label})); });
    select.value = node.type;
    select.addEventListener('change', function () {
      node.type = select.value;
      if ((FIELDS[node.type] || []).indexOf('key') >= 0 && !node.key.trim()) node.key = newKey();
      render();
    });
    var box = el('div', {class: 'me-leaf'}, [el('label', {class: 'me-field'}, [el('span', {class: 'me-label', text: '类型'}), select])]);
    (FIELDS[node.type] || []).forEach(function (f) {
      box.appendChild(textField(node, f, FIELD_LABELS[f], {
        limit: f === 'key' ? L.key : (f === 'url' ? L.url : null), help: KEY_HELP[f]
      }));
    });
    if (node.type === 'click') {
      if (builtin(node)) box.appendChild(el('p', {class: 'hint', text: BUILTIN_NOTE}));
      else if (node.locked) box.appendChild(el('p', {class: 'hint', text: '此按钮已设置图片或图文回复，请到「自动回复」中修改。'}));
      else box.appendChild(textField(node, 'reply', '点击后回复', {multiline: true, placeholder: '用户点击此菜单后收到的文字', limit: L.reply}));
    }
    return box;
  }
  function subCard(parent, s, j) {
    return el('div', {class: 'me-sub'}, [
      el('div', {class: 'me-head'}, [el('strong', {text: '子菜单 ' + (j + 1)}), tools(parent.sub_button, j, '子菜单')]),
      textField(s, 'name', '名称', {limit: L.sub_name, placeholder: '不超过 ' + L.sub_name + ' 字节'}),
      leafFields(s)
    ]);
  }
  function topCard(b, i) {
    var card = el('div', {class: 'me-card'}, [
      el('div', {class: 'me-head'}, [el('strong', {text: '一级菜单 ' + (i + 1)}), tools(buttons, i, '一级菜单')]),
      textField(b, 'name', '名称', {limit: L.top_name, placeholder: '最多 5 个汉字'})
    ]);
    if (b.sub_button.length) {
      var subs = el('div', {class: 'me-subs'});
      b.sub_button.forEach(function (s, j) { subs.appendChild(subCard(b, s, j)); });
      card.appendChild(subs);
    } else {
      card.appendChild(leafFields(b));
    }
    card.appendChild(el('div', {class: 'actions'}, [
      el('button', {type: 'button', class: 'btn small secondary', disabled: b.sub_button.length >= L.sub, onclick: function () {
        if (!b.sub_button.length && b.type && !window.confirm('添加子菜单后，「' + (b.name.trim() || '此菜单') + '」本身不再响应点击，原设置将转为第 1 个子菜单。继续？')) return;
        if (!b.sub_button.length && b.type) {
          var first = toNode(leafOut(b)); first.reply = b.reply; first.locked = b.locked; b.sub_button.push(first); b.type = '';
        } else {
          b.sub_button.push(toNode({name: '', type: 'click', key: newKey()}));
        }
        render();
      }, text: '+ 添加子菜单'}),
      el('span', {class: 'hint', text: b.sub_button.length + '/' + L.sub + ' 个子菜单'})
    ]));
    return card;
  }
  function render() {
    if (!editor) { renderPreview(); return; }
    editor.innerHTML = '';
    buttons.forEach(function (b, i) { editor.appendChild(topCard(b, i)); });
    editor.appendChild(el('div', {class: 'actions'}, [
      el('button', {type: 'button', class: 'btn secondary', disabled: buttons.length >= L.top, onclick: function () {
        buttons.push(toNode({name: '', type: 'click', key: newKey()})); render();
      }, text: '+ 添加一级菜单'}),
      el('span', {class: 'hint', text: buttons.length + '/' + L.top + ' 个一级菜单'})
    ]));
    changed(true);
  }
  function changed(structural) {
    if (!structural) dirty = true;
    var problems = validate();
    editor.querySelectorAll('.invalid').forEach(function (n) { n.classList.remove('invalid'); });
    problemsList.innerHTML = '';
    problems.forEach(function (p) {
      problemsList.appendChild(el('li', {text: p.msg}));
      var input = p.uid != null && editor.querySelector('[data-uid="' + p.uid + '"][data-field="' + (p.field || 'name') + '"]');
      if (input) input.classList.add('invalid');
    });
    form.querySelectorAll('[data-submit]').forEach(function (btn) { btn.disabled = problems.length > 0; });
    payload.value = JSON.stringify(serialize());
    renderPreview();
  }

  if (!editor || cfg.readonly) { renderPreview(); return; }
  render();
  editor.addEventListener('click', function () { dirty = true; });
  form.addEventListener('submit', function (e) {
    payload.value = JSON.stringify(serialize());
    if (validate().length) { e.preventDefault(); problemsList.scrollIntoView({block: 'center'}); return; }
    if (!confirmed(e)) { e.preventDefault(); return; }
    dirty = false;
  });
  window.addEventListener('beforeunload', function (e) { if (dirty) { e.preventDefault(); e.returnValue = ''; } });
})();
