/* astertrack forms: a copy of each marked form's enquiry goes to the tracker (POST /v/form) when the
 * form is submitted; the form's own submission (its action, the site's own handlers) is untouched.
 * Loaded by the snippet (v.js) when the page has <form data-astertrack-form> or calls
 * astertrack.form(formElement).  Fields are found by name, type and autocomplete; an input with
 * data-astertrack-field="phone|email|name|message" says itself ("none": never sent).  Plain JS. */
(function (w, d) {
  'use strict';
  var a = w.astertrack, me = d.currentScript;
  if (!a || !me || a.capturing) return;
  a.capturing = 1;
  var url = me.src.replace(/[?#].*$/, '').replace(/\/[^\/]*$/, '') + '/v/form';
  var KEEP = /^(utm_.+|gclid|gbraid|wbraid|yclid|fbclid|msclkid)$/i; // what attribution reads
  var SKIP = /^(password|hidden|submit|button|reset|image|file|checkbox|radio)$/i;
  // the body stays under the tracker's 16 KB cap whatever the script the visitor types in
  var MAX = { phone: 64, email: 254, name: 200, message: 4000 };
  var last = '', lastAt = 0;

  // the page without secrets: utm_* and click ids kept, no other parameter, no fragment
  function page() {
    var u = new URL(location.href), q = new URLSearchParams();
    u.searchParams.forEach(function (v, k) { if (KEEP.test(k)) q.append(k, v); });
    u.search = q.toString();
    u.hash = u.username = u.password = '';
    return u.href.slice(0, 2048);
  }

  // which of our fields an input fills ('' for none)
  function role(el) {
    var said = el.getAttribute('data-astertrack-field'), t = String(el.type || '').toLowerCase(),
      ac = String(el.getAttribute('autocomplete') || '').toLowerCase(),
      n = ((el.getAttribute('name') || '') + ' ' + (el.id || '')).toLowerCase();
    if (said) return /^(phone|email|name|message)$/.test(said) ? said : '';
    if (el.disabled || SKIP.test(t) || !/^(INPUT|TEXTAREA|SELECT)$/.test(el.nodeName)) return '';
    if (t === 'tel' || /\btel\b/.test(ac) || /phone|(^|[\W_])tel|телефон/.test(n)) return 'phone';
    if (t === 'email' || /\bemail\b/.test(ac) || /e-?mail|почт/.test(n)) return 'email';
    if (el.nodeName === 'TEXTAREA' || /message|comment|question|msg|сообщ|вопрос|коммент/.test(n)) return 'message';
    if (/\bname\b/.test(ac) || /name|fio|имя|фио/.test(n)) return 'name';
    return '';
  }

  function fields(form) {
    var v = {};
    [].forEach.call(form.elements, function (el) {
      var r = role(el), x = r && String(el.value || '').trim();
      if (x) v[r] = (v[r] ? v[r] + (r === 'message' ? '\n' : ' ') : '') + x;
    });
    Object.keys(v).forEach(function (r) { v[r] = v[r].slice(0, MAX[r]); });
    return v;
  }

  function send(form) {
    var v = fields(form), body, sent;
    if (!v.phone && !v.email) return; // the tracker records an enquiry someone can be reached by
    v.k = a.key;
    v.sid = a.st.sid || '';
    v.page = page();
    v.form = (form.getAttribute('data-astertrack-form') || form.getAttribute('id') ||
      form.getAttribute('name') || '').slice(0, 200);
    if (form.hasAttribute('data-astertrack-callback')) v.callback = 1;
    body = JSON.stringify(v); // text/plain: no CORS preflight
    if (body === last && Date.now() - lastAt < 10000) return; // a double click, sent once
    last = body;
    lastAt = Date.now();
    try { sent = navigator.sendBeacon(url, body); } catch (e) { sent = false; }
    if (!sent) fetch(url, { method: 'POST', body: body, keepalive: true, credentials: 'omit' })['catch'](function () {});
  }

  // the capture phase of the window sees the submit before the form's own handlers could stop it;
  // nothing here prevents the default or stops the event
  w.addEventListener('submit', function (e) {
    var f = e.target;
    try {
      if (f && f.nodeName === 'FORM' && (f.hasAttribute('data-astertrack-form') || a.st.f.indexOf(f) >= 0)) send(f);
    } catch (err) { /* the site's form goes on whatever happens here */ }
  }, true);
})(window, document);
