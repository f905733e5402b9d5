/* astertrack widget (docs/widget.md): the lead-capture pop-up and the callback button.  Loaded by j.js
 * only where the site's answer says the widget is on, after the number swap; never blocks the page.
 * Its DOM lives in a shadow root, built with createElement/textContent only (what anyone typed or an
 * admin wrote is text, never HTML).  The dialog is modal for keyboards and screen readers: role
 * dialog, aria-modal, labelled inputs, a live region for the result, Tab kept inside, Esc closes and
 * focus goes back to where it was.  Submissions go to /v/form with a channel (lead_capture, callback).
 * A chat would be one more entry of CH (its own launcher tab); the rest stays as it is. */
(function (w, d) {
  'use strict';
  var a = w.astertrack, me = d.currentScript;
  if (!a || !me || a.w) return;
  a.w = 1;
  var base = me.src.replace(/[?#].*$/, '').replace(/\/[^\/]*$/, '');
  var lang = /^ru/i.test(d.documentElement.lang || navigator.language || '') ? 'ru' : 'en';
  var L = { ru: ['Имя', 'Телефон', 'Закрыть', 'Проверьте номер телефона', 'Не отправилось, попробуйте ещё раз'],
    en: ['Name', 'Phone', 'Close', 'Please check the phone number', 'Not sent, please try again'] }[lang];
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
      'button:focus-visible,input:focus-visible{outline:3px solid ' + c + ';outline-offset:2px}.r{margin:8px 0 0;min-height:1em}'));
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

  // the channels, in the launcher's order: each either a button in the corner or a rule of its own
  var CH = {
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
