/* astertrack widget (docs/widget.md): the lead-capture pop-up and the callback button.  Loaded by j.js
 * only where the site's answer says the widget is on, after the number swap; never blocks the page.
 * Its DOM lives in a shadow root, built with createElement/textContent only (what anyone typed or an
 * admin wrote is text, never HTML).  The dialog is modal for keyboards and screen readers: role
 * dialog, aria-modal, labelled inputs, a live region for the result, Tab kept inside, Esc closes and
 * focus goes back to where it was.  Submissions go to /v/form with a channel (lead_capture, callback).
 * The chat (CH.chat): a panel with an aria-live log; each message waits in a localStorage outbox under
 * its own id until the server acknowledges it (resent after a drop: stored once); token and last
 * number per site in localStorage, so the conversation survives navigation; EventSource on
 * /v/chat/stream, polling /v/chat/history when it keeps failing; out of hours a form (/v/form). */
(function (w, d) {
  'use strict';
  var a = w.astertrack, me = d.currentScript;
  if (!a || !me || a.w) return;
  a.w = 1;
  var base = me.src.replace(/[?#].*$/, '').replace(/\/[^\/]*$/, '');
  var lang = /^ru/i.test(d.documentElement.lang || navigator.language || '') ? 'ru' : 'en';
  var L = { ru: ['Имя', 'Телефон', 'Закрыть', 'Проверьте номер телефона', 'Не отправилось, попробуйте ещё раз', 'Сообщение', 'Вы', 'Менеджер', 'подключился к чату', 'Чат передан:', 'Отправляется…'],
    en: ['Name', 'Phone', 'Close', 'Please check the phone number', 'Not sent, please try again', 'Message', 'You', 'Manager', 'joined the chat', 'Chat passed to', 'Sending…'] }[lang];
  var cfg, T, root, open, opener, n = 0;

  function get(k, s) { try { return (s || w.localStorage).getItem(k) || ''; } catch (e) { return ''; } }
  function put(k, v, s) { try { (s || w.localStorage).setItem(k, v); } catch (e) { /* private mode */ } }
  function el(tag, cls, text, attrs) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function when(at) { // the opening in the visitor's own time zone
    return new Date(at).toLocaleString(lang, { day: 'numeric', month: 'long', hour: '2-digit', minute: '2-digit' });
  }

  function build() {
    var host = el('div', '', '', { 'data-astertrack-widget': '', 'data-astertrack-noswap': '' });
    var c = /^#[0-9a-f]{6}$/i.test(cfg.colour) ? cfg.colour : '#1f6feb', side = cfg.position === 'bottom-left' ? 'left' : 'right';
    root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;
    root.appendChild(el('style', '', ':host{all:initial}*{box-sizing:border-box;font:15px/1.4 system-ui,sans-serif}' +
      '.b{position:fixed;bottom:20px;' + side + ':20px;z-index:2147483000;background:' + c + ';color:#fff;border:0;border-radius:24px;padding:12px 18px;cursor:pointer;box-shadow:0 2px 8px #0004}' +
      '.o{position:fixed;inset:0;z-index:2147483001;background:#0006;display:flex;align-items:center;justify-content:center}' +
      '.d{background:#fff;color:#222;border-radius:8px;padding:20px;width:min(360px,92vw);position:relative}' +
      '.d h2{font-size:20px;font-weight:600;margin:0 28px 8px 0}label{display:block;margin:8px 0 2px}' +
      'input{width:100%;padding:8px;border:1px solid #888;border-radius:4px}input[aria-invalid=true]{border-color:#c00}' +
      '.s{margin-top:12px;width:100%;background:' + c + ';color:#fff;border:0;border-radius:4px;padding:10px;cursor:pointer}' +
      '.x{position:absolute;top:8px;right:8px;background:none;border:0;font-size:22px;cursor:pointer}' +
      'button:focus-visible,input:focus-visible{outline:3px solid ' + c + ';outline-offset:2px}.r{margin:8px 0 0;min-height:1em}' +
      '[hidden]{display:none!important}.b.c{bottom:' + (cfg.channels.indexOf('callback') < 0 ? 20 : 76) + 'px}.p{position:fixed;bottom:20px;' + side + ':20px;z-index:2147483002;width:min(360px,94vw);height:min(480px,80vh);background:#fff;color:#222;border-radius:8px;box-shadow:0 4px 16px #0005;display:flex;flex-direction:column;padding:12px}' +
      '.p h2{font-size:17px;margin:0 28px 8px 0}.l{flex:1;overflow-y:auto;list-style:none;margin:0;padding:0}.l li{margin:4px 0;padding:6px 10px;border-radius:8px;background:#eee;max-width:85%;white-space:pre-wrap;word-wrap:break-word}' +
      '.l .v{margin-left:auto;background:' + c + ';color:#fff}.l .y{background:none;color:#666;font-size:13px;max-width:100%;text-align:center}.l .q{opacity:.6}.l small{display:block;font-size:11px;opacity:.8}' +
      '.m{display:flex;gap:6px;margin-top:6px}.m textarea{flex:1;resize:none;padding:6px;border:1px solid #888;border-radius:4px;font:inherit}.m .s{width:auto;margin:0}.t{font-size:13px;color:#666;min-height:1.2em;margin:2px 0}'));
    d.body.appendChild(host);
  }

  function dialog(ch) {
    if (open) return;
    opener = d.activeElement && d.activeElement !== d.body ? d.activeElement : null;
    if (opener && opener.shadowRoot) opener = opener.shadowRoot.activeElement || opener;
    var id = 'astertrack-w-' + (++n), cb = ch === 'callback', later = cb && cfg.callback && cfg.callback.at;
    var o = el('div', 'o'), box = el('div', 'd', '', { role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': id + 't' });
    var f = el('form', '', '', { novalidate: '' }), live = el('p', 'r', '', { 'aria-live': 'polite', role: 'status' });
    var x = el('button', 'x', '\u00d7', { type: 'button', 'aria-label': L[2] });
    box.appendChild(el('h2', '', T[ch + '_title'], { id: id + 't' }));
    box.appendChild(el('p', '', later ? T.callback_later.replace('{time}', when(later)) : T[ch + '_offer']));
    var name = el('input', '', '', { id: id + 'n', name: 'name', autocomplete: 'name', maxlength: '200' });
    var tel = el('input', '', '', { id: id + 'p', name: 'phone', type: 'tel', autocomplete: 'tel', maxlength: '64', required: '' });
    f.appendChild(el('label', '', L[0], { 'for': id + 'n' }));
    f.appendChild(name);
    f.appendChild(el('label', '', L[1], { 'for': id + 'p' }));
    f.appendChild(tel);
    f.appendChild(el('button', 's', T[ch + '_button'], { type: 'submit' }));
    box.appendChild(f);
    box.appendChild(live);
    box.appendChild(x);
    o.appendChild(box);
    root.appendChild(o);
    open = o;
    x.onclick = close;
    o.onclick = function (e) { if (e.target === o) close(); };
    box.onkeydown = function (e) {
      if (e.key === 'Escape') { e.preventDefault(); return close(); }
      if (e.key !== 'Tab') return;
      var all = [].filter.call(box.querySelectorAll('input,button'), function (i) { return !i.disabled && i.offsetParent; });
      var first = all[0], last = all[all.length - 1], at = root.activeElement;
      if (e.shiftKey && at === first) { e.preventDefault(); last.focus(); } else if (!e.shiftKey && at === last) { e.preventDefault(); first.focus(); }
    };
    f.onsubmit = function (e) {
      e.preventDefault();
      var digits = tel.value.replace(/\D+/g, '');
      if (digits.length < 7 || digits.length > 15) {
        tel.setAttribute('aria-invalid', 'true');
        live.textContent = L[3];
        return tel.focus();
      }
      tel.removeAttribute('aria-invalid');
      f.querySelector('.s').disabled = true;
      var body = { k: a.key, sid: a.st.sid || '', channel: cb ? 'callback' : 'lead_capture', name: name.value.trim().slice(0, 200),
        phone: tel.value.trim().slice(0, 64), page: location.href.split('#')[0].slice(0, 2048), form: 'widget:' + ch };
      fetch(base + '/v/form', { method: 'POST', body: JSON.stringify(body), credentials: 'omit' })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (r) {
          if (!r) throw 0;
          put('astertrack_w_seen', Date.now());
          f.hidden = true;
          live.textContent = r.at ? cfg.later_thanks[lang].replace('{time}', when(r.at)) : T[ch + '_thanks'];
          x.focus();
        })['catch'](function () { f.querySelector('.s').disabled = false; live.textContent = L[4]; });
    };
    (cb ? tel : name).focus();
  }

  function close() {
    if (!open) return;
    open.parentNode.removeChild(open);
    open = null;
    if (opener && opener.focus) opener.focus();
  }

  function popup(p) { // shown when its rules match, at most once per visitor per period
    var pv = +get('astertrack_w_pv') + 1, q = new URLSearchParams(location.search), utm = get('astertrack_w_utm', w.sessionStorage);
    put('astertrack_w_pv', pv);
    q.forEach(function (v, k) { if (/^utm_/.test(k)) utm += '&' + k + '=' + v; });
    put('astertrack_w_utm', utm, w.sessionStorage);
    var seen = +get('astertrack_w_seen');
    if (seen && p.days && Date.now() - seen < p.days * 864e5) return;
    if (p.page && pv < p.page) return;
    if ((p.urls.length || p.utm.length) && !p.urls.some(function (u) { return location.href.indexOf(u) >= 0; }) &&
      !p.utm.some(function (u) { return (utm + '&').indexOf('&' + u + '&') >= 0; })) return;
    function show() {
      if (open || a.w > 1) return;
      a.w = 2;
      put('astertrack_w_seen', Date.now());
      dialog('popup');
    }
    if (p.delay) setTimeout(show, p.delay * 1000);
    if (p.exit) d.addEventListener('mouseout', function (e) { if (!e.relatedTarget && e.clientY <= 0) show(); });
    if (!p.delay && !p.exit) show();
  }

  // ---- the chat
  var CK = 'astertrack_chat_' + a.key, S, P, list, say, typ, ask, es, fails = 0, busy = 0, poll, seen = {}, pend = {}, typed = 0, tt, hi = 0, mn;
  function load() { try { S = JSON.parse(get(CK)) || 0; } catch (e) { S = 0; } S = S && S.o ? S : { t: '', s: 0, o: [] }; }
  function save() { put(CK, JSON.stringify(S)); }
  function cid() { return Date.now().toString(36) + Math.random().toString(36).slice(2, 10); }
  function api(p, b) { // JSON as text/plain (no preflight); rejects with the status (0: the network)
    b.k = a.key;
    if (p !== 'start') b.token = S.t;
    return fetch(base + '/v/chat/' + p, { method: 'POST', body: JSON.stringify(b), credentials: 'omit' }).then(function (r) {
      return r.ok ? r.json() : r.json().then(function (j) { throw { s: r.status, j: j }; }, function () { throw { s: r.status }; });
    }, function () { throw { s: 0 }; });
  }
  function line(m) { // one message or system line: text only, never markup
    var li = el('li', m.author === 'visitor' ? 'v' : m.author === 'system' ? 'y' : ''), k = m.kind, who = (m.meta || {}).manager;
    if (k === 'claimed' || k === 'transferred') mn = who || m.meta.to || mn; // who answers, by name
    if (k === 'text') { li.appendChild(el('small', '', m.author === 'visitor' ? L[6] : mn || L[7])); li.appendChild(d.createTextNode(m.text)); }
    else li.textContent = k === 'claimed' ? (who || L[7]) + ' ' + L[8] : k === 'transferred' ? L[9] + ' ' + (m.meta.to || '') :
      k === 'asked_phone' ? T.chat_ask_phone : k === 'contact' ? T.chat_thanks : k === 'closed' ? T.chat_closed : '';
    return li;
  }
  function take(ms) {
    (ms || []).forEach(function (m) {
      if (seen[m.seq]) return;
      var li = line(m), old = m.client_id && pend[m.client_id];
      seen[m.seq] = li;
      li.setAttribute('data-seq', m.seq);
      if (old) { list.replaceChild(li, old); delete pend[m.client_id]; } else list.appendChild(li);
      if (m.seq > hi) hi = m.seq;
      if (m.seq > S.s) { S.s = m.seq; save(); }
    });
    list.scrollTop = 1e9;
  }
  function state(st) {
    if (!st) return;
    S.st = st.status;
    mn = st.manager || mn;
    save();
    ask.hidden = !(st.status === 'unanswered' && !st.phone_given);
    for (var q in seen) if (seen[q].className === 'v' && +q <= st.manager_read_seq && !seen[q].r) seen[q].appendChild(seen[q].r = el('small', '', T.chat_read));
    var until = st.manager_typing_until && new Date(st.manager_typing_until) - Date.now();
    typ.textContent = until > 0 ? T.chat_typing : '';
    clearTimeout(tt);
    if (until > 0) tt = setTimeout(function () { typ.textContent = ''; }, until);
    if (st.status === 'closed') say.textContent = T.chat_closed;
    if (P && !P.hidden && st.seq > st.visitor_read_seq && S.t) api('read', { seq: st.seq })['catch'](function () {});
  }
  function queued(m) { var li = el('li', 'v q', m.x); li.appendChild(el('small', '', L[10])); pend[m.c] = li; list.appendChild(li); list.scrollTop = 1e9; }
  function flush() { // the outbox in order, one at a time; a message leaves it once the server has it
    if (busy || !S.o.length) return;
    var m = S.o[0], first = !S.t || S.st === 'closed';
    busy = 1;
    if (first && S.t) { S.t = ''; S.s = hi = 0; list.textContent = ''; seen = {}; say.textContent = ''; for (var i = 0; i < S.o.length; i++) queued(S.o[i]); }
    api(first ? 'start' : 'send', first ? { sid: a.st.sid || '', text: m.x, client_id: m.c, lang: lang, page: location.href.split('#')[0].slice(0, 2048) } : { text: m.x, client_id: m.c })
      .then(function (r) {
        busy = 0;
        S.o.shift();
        if (r.token) { S.t = r.token; save(); take(r.messages); connect(); } else take([r.message]);
        state(r.state);
        flush();
      }, function (e) {
        busy = 0;
        if (e.s === 409) { S.st = 'closed'; return flush(); } // a new chat
        if (e.s === 404 && !first) { S.t = ''; return flush(); }
        if (e.s && e.s !== 429 && e.s < 500) { S.o.shift(); save(); if (pend[m.c]) pend[m.c].textContent = L[4]; return flush(); }
        setTimeout(flush, 3000); // the network or a 429/5xx: kept, sent again
      });
  }
  function connect() {
    if (!S.t) return;
    if (es) es.close();
    clearInterval(poll);
    var q = '?k=' + encodeURIComponent(a.key) + '&token=' + encodeURIComponent(S.t) + '&after=';
    if (!w.EventSource || fails > 5) { // the fallback: polling the history
      poll = setInterval(function () {
        fetch(base + '/v/chat/history' + q + hi, { credentials: 'omit' }).then(function (r) { return r.json(); })
          .then(function (r) { take(r.messages); state(r.state); flush(); })['catch'](function () {});
      }, 3000);
      return;
    }
    es = new w.EventSource(base + '/v/chat/stream' + q + hi); // this page's last (0: the whole chat)
    es.onmessage = function (e) { fails = 0; take([JSON.parse(e.data)]); };
    es.addEventListener('state', function (e) { fails = 0; state(JSON.parse(e.data)); flush(); });
    es.onerror = function () { fails++; if (es.readyState === 2) setTimeout(connect, 2000); };
  }
  function offline(box) { // out of hours: a form enquiry with the visit's attribution
    var f = el('form', '', '', { novalidate: '' }), r = el('p', 'r', '', { role: 'status', 'aria-live': 'polite' }), id = 'astertrack-c', F = {};
    box.appendChild(el('p', '', T.chat_offline_offer));
    [['n', L[0], 'input', { autocomplete: 'name', maxlength: '200' }], ['p', L[1], 'input', { type: 'tel', autocomplete: 'tel', maxlength: '64' }],
      ['m', L[5], 'textarea', { maxlength: '2000', rows: '3' }]].forEach(function (x) {
      f.appendChild(el('label', '', x[1], { 'for': id + x[0] }));
      x[3].id = id + x[0];
      f.appendChild(F[x[0]] = el(x[2], '', '', x[3]));
    });
    f.appendChild(el('button', 's', T.chat_send, { type: 'submit' }));
    box.appendChild(f);
    box.appendChild(r);
    f.onsubmit = function (e) {
      e.preventDefault();
      var digits = F.p.value.replace(/\D+/g, '');
      if (digits.length < 7 || digits.length > 15) { F.p.setAttribute('aria-invalid', 'true'); r.textContent = L[3]; return F.p.focus(); }
      fetch(base + '/v/form', { method: 'POST', credentials: 'omit', body: JSON.stringify({ k: a.key, sid: a.st.sid || '', name: F.n.value.trim().slice(0, 200),
        phone: F.p.value.trim().slice(0, 64), message: F.m.value.trim().slice(0, 2000), page: location.href.split('#')[0].slice(0, 2048), form: 'widget:chat' }) })
        .then(function (x) { if (!x.ok) throw 0; f.hidden = true; r.textContent = T.chat_offline_thanks; })['catch'](function () { r.textContent = L[4]; });
    };
  }
  function panel(b) {
    var id = 'astertrack-chat-t', x = el('button', 'x', '\u00d7', { type: 'button', 'aria-label': L[2] });
    P = el('section', 'p', '', { role: 'dialog', 'aria-labelledby': id, hidden: '' });
    P.appendChild(el('h2', '', T[cfg.chat.open || S.t ? 'chat_title' : 'chat_offline_title'], { id: id }));
    P.appendChild(x);
    x.onclick = function () { P.hidden = true; b.setAttribute('aria-expanded', 'false'); b.focus(); };
    P.onkeydown = function (e) { if (e.key === 'Escape') x.onclick(); };
    root.appendChild(P);
    if (!cfg.chat.open && !S.t) return offline(P);
    list = el('ol', 'l', '', { role: 'log', 'aria-live': 'polite', 'aria-label': T.chat_title });
    list.appendChild(el('li', 'y', T.chat_greeting));
    P.appendChild(list);
    P.appendChild(typ = el('p', 't', '', { 'aria-live': 'polite' }));
    P.appendChild(say = el('p', 't', '', { role: 'status' }));
    ask = el('form', 'm', '', { hidden: '', 'aria-label': T.chat_ask_phone });
    var tel = el('input', '', '', { type: 'tel', autocomplete: 'tel', maxlength: '64', 'aria-label': L[1] });
    ask.appendChild(tel);
    ask.appendChild(el('button', 's', T.chat_phone_button, { type: 'submit' }));
    ask.onsubmit = function (e) {
      e.preventDefault();
      api('contact', { phone: tel.value.trim().slice(0, 64) }).then(function (r) { state(r.state); }, function () { say.textContent = L[3]; tel.focus(); });
    };
    P.appendChild(ask);
    var f = el('form', 'm'), t = el('textarea', '', '', { rows: '2', maxlength: '2000', placeholder: T.chat_placeholder, 'aria-label': T.chat_placeholder });
    f.appendChild(t);
    f.appendChild(el('button', 's', T.chat_send, { type: 'submit' }));
    P.appendChild(f);
    t.onkeydown = function (e) { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); f.onsubmit(e); } };
    t.oninput = function () { if (S.t && S.st !== 'closed' && Date.now() - typed > 3000) { typed = Date.now(); api('typing', {})['catch'](function () {}); } };
    f.onsubmit = function (e) {
      e.preventDefault();
      var v = t.value.trim();
      if (!v) return;
      var m = { c: cid(), x: v.slice(0, 2000) };
      t.value = '';
      S.o.push(m);
      save();
      queued(m);
      flush();
    };
    S.o.forEach(queued);
    connect();
    flush();
    w.addEventListener('online', function () { fails = 0; flush(); if (!es || es.readyState === 2) connect(); });
  }

  // the channels, in the launcher's order: each either a button in the corner or a rule of its own
  var CH = {
    chat: function () {
      load();
      var b = el('button', 'b c', T.chat_title, { type: 'button', 'aria-expanded': 'false' });
      root.appendChild(b);
      b.onclick = function () {
        if (!P) panel(b);
        P.hidden = !P.hidden;
        b.setAttribute('aria-expanded', String(!P.hidden));
        if (P.hidden) return;
        (P.querySelector('textarea') || P.querySelector('input')).focus();
        if (S.t && hi) api('read', { seq: hi })['catch'](function () {});
      };
      if (S.t || S.o.length) { panel(b); if (get(CK + '_open', w.sessionStorage)) b.onclick(); }
      b.addEventListener('click', function () { put(CK + '_open', P.hidden ? '' : '1', w.sessionStorage); });
    },
    callback: function () {
      var b = el('button', 'b', T.callback_button, { type: 'button', 'aria-haspopup': 'dialog' });
      b.onclick = function () { dialog('callback'); };
      root.appendChild(b);
    },
    popup: function () { popup(cfg.popup); }
  };

  fetch(base + '/v/w?k=' + encodeURIComponent(a.key) + '&v=' + ((a.st.info || {}).w || 0), { credentials: 'omit' })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (r) {
      if (!r) return;
      cfg = r;
      T = r.texts[lang];
      build();
      r.channels.forEach(function (c) { if (CH[c]) CH[c](); });
    })['catch'](function () { /* the page goes on without the widget */ });
})(window, document);
