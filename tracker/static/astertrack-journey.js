/* astertrack journey: what the visitor looks at and reaches for, for the call card (docs/journey.md).
 * Loaded by the snippet (v.js) once the visit has a session, so the number swap is never delayed; an
 * opted-out visitor never loads it.  Page views (the URL without secrets: utm_*, click ids and the
 * site's own allowed parameters kept; the title, the referrer, seconds on the page) and actions
 * (clicks on phone numbers, tel:/sms: and messenger links, a form's first focus and its submit)
 * are queued; the heartbeat and the unload beacon of v.js carry them (st.take), a click or the page
 * hidden sends them at once with navigator.sendBeacon (POST /v/j).  Each page load and action has
 * its own id, so what is sent twice is stored once.  Also the lazy allocation's claim (v.js has no
 * room for it): a number is taken on the first interaction or when a tel: link comes into view. */
(function (w, d) {
  'use strict';
  var a = w.astertrack, me = d.currentScript;
  if (!a || !me || a.st.take) return;
  var st = a.st, base = me.src.replace(/[?#].*$/, '').replace(/\/[^\/]*$/, '');
  var KEEP = /^(utm_.+|gclid|gbraid|wbraid|dclid|yclid|ysclid|fbclid|msclkid|ttclid|twclid|li_fat_id|vkclid|_openstat)$/i;
  var MESSENGER = /^(viber|whatsapp|tg|skype):|^https?:\/\/(wa\.me|api\.whatsapp\.com|t\.me|telegram\.me|vk\.me)\//i;
  var q = [], pv, seen = new WeakSet(), where = '';

  // the page without secrets: utm_*, click ids and the site's own (the tracker's q) kept, no fragment
  function clean(u) {
    try { u = new URL(u, location.href); } catch (e) { return ''; }
    if (!/^https?:$/.test(u.protocol)) return '';
    var keep = new URLSearchParams(), ok = (st.info || {}).q || [];
    u.searchParams.forEach(function (v, k) { if (KEEP.test(k) || ok.indexOf(k.toLowerCase()) >= 0) keep.append(k, v); });
    u.search = keep.toString();
    u.hash = u.username = u.password = '';
    return u.href.slice(0, 2048);
  }

  function id() { return Date.now().toString(36) + Math.random().toString(36).slice(2, 8); }

  function seconds() { // the current page's view, (again) with its seconds so far
    if (!pv) return;
    var s = Math.round((Date.now() - pv.at) / 1000);
    if (s !== pv.s || !pv.sent) { pv.s = s; pv.sent = 1; if (q.indexOf(pv) < 0) q.push(pv); }
  }

  function view() { // a page shown (a load or an SPA navigation): the one before ends
    var u = clean(location.href), before = where;
    if (!u || u === where) return;
    seconds();
    where = u;
    q.push(pv = { t: 'p', id: id(), at: Date.now(), u: u, ti: String(d.title).slice(0, 300), r: before || clean(d.referrer) });
  }

  // what to send now: at most 50 (the tracker's cap), dated "ms ago" (the browser's clock may be wrong)
  st.take = function () {
    var n = Date.now();
    seconds();
    return q.splice(0, 50).map(function (e) {
      var o = { t: e.t, id: e.id, d: n - e.at, u: e.u };
      if (e.t === 'p') { o.ti = e.ti; o.r = e.r; o.s = e.s; } else { o.k = e.k; o.x = e.x; }
      return o;
    });
  };

  function flush() {
    var b = st.sid && st.take();
    if (b && b.length) navigator.sendBeacon(base + '/v/j', JSON.stringify({ k: a.key, sid: st.sid, ev: b }));
  }

  function act(k, x) {
    q.push({ t: 'a', id: id(), at: Date.now(), k: k, x: String(x || '').trim().slice(0, 500), u: clean(location.href) });
    flush(); // a call may follow at once: the card should already show it
  }

  d.addEventListener('click', function (e) {
    try {
      var el = e.target.closest ? e.target : e.target.parentElement, link = el && el.closest('a[href]'),
        h = link ? link.getAttribute('href') : '', t = el ? String(el.textContent).trim() : '';
      if (/^tel:/i.test(h)) act('tel_link', h);
      else if (/^sms:/i.test(h)) act('sms_link', h);
      else if (/^mailto:/i.test(h)) act('email_link', h.split('?')[0]);
      else if (MESSENGER.test(h)) act('messenger_link', h);
      else if (t.length < 40 && t.replace(/\D+/g, '').length > 9) act('phone_click', t);
    } catch (err) { /* the page's click goes on whatever happens here */ }
  }, true);
  function form(f) { return f.getAttribute('data-astertrack-form') || f.id || f.getAttribute('name') || f.getAttribute('action') || ''; }
  w.addEventListener('submit', function (e) { if (e.target.nodeName === 'FORM') act('form_submit', form(e.target)); }, true);
  d.addEventListener('focusin', function (e) {
    var f = e.target.form;
    if (f && !seen.has(f)) { seen.add(f); act('form_focus', form(f)); }
  });
  d.addEventListener('visibilitychange', function () { if (d.visibilityState === 'hidden') flush(); });
  ['pushState', 'replaceState'].forEach(function (name) { // SPA navigation (v.js wraps them too)
    var orig = history[name];
    history[name] = function () { var r = orig.apply(this, arguments); setTimeout(view, 0); return r; };
  });
  w.addEventListener('popstate', function () { setTimeout(view, 0); });
  if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', view); else view();

  // lazy allocation: the number is claimed by a person, not by a page load
  function claim() {
    if (st.claimed) return;
    st.claimed = st.touched = true;
    a.go();
  }
  st.lazy = function () {
    if (st.claimed || st.lazyOn) return;
    st.lazyOn = 1;
    if (st.touched) return claim(); // interacted before this script came
    ['scroll', 'pointerdown', 'keydown', 'touchstart', 'mousemove'].forEach(function (e) {
      w.addEventListener(e, claim, { once: true, passive: true });
    });
    var io = new IntersectionObserver(function (es) {
      es.forEach(function (e) { if (e.isIntersecting) { io.disconnect(); claim(); } });
    });
    function watch() { d.querySelectorAll(st.css + (st.css && ',') + 'a[href^="tel:"]').forEach(function (el) { io.observe(el); }); }
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', watch); else watch();
  };
  if (st.lz) st.lazy();

  // the website widget (docs/widget.md): its own script, only where the site's answer says it is on
  if ((st.info || {}).w && !a.widget) {
    a.widget = d.createElement('script');
    a.widget.async = true;
    a.widget.src = base + '/w.js';
    d.head.appendChild(a.widget);
  }

  // messengers (docs/messengers.md): the visit's code goes into the pre-filled message of the site's
  // WhatsApp links and the start parameter of its own bot's t.me links (a t.me link to a person or a
  // channel has no pre-fill: left as it is), so the conversation finds this visit
  (function () {
    var WA = /^https?:\/\/(wa\.me\/|api\.whatsapp\.com\/send)/i, TG = /^https?:\/\/(t|telegram)\.me\/(\w+)\/?$/i,
      KEY = 'astertrack_mc', cur;
    function links() {
      return [].filter.call(d.querySelectorAll('a[href]'), function (l) { return WA.test(l.href) || TG.test(l.href.split('?')[0]); });
    }
    function mark(c) {
      links().forEach(function (l) {
        try {
          var u = new URL(l.href), m = TG.exec(u.origin + u.pathname), p = [], t;
          if (WA.test(l.href)) {
            if (!c.wa) return;
            t = (u.searchParams.get('text') || '').replace(/\s*\((код|code): \w{6}\)$/, '');
            u.searchParams.forEach(function (v, k) { if (k !== 'text') p.push(encodeURIComponent(k) + '=' + encodeURIComponent(v)); });
            p.push('text=' + encodeURIComponent((t ? t + ' ' : '') + '(' + (/^ru/i.test(d.documentElement.lang) ? 'код' : 'code') + ': ' + c.code + ')'));
            u.search = p.join('&');
          } else if (m && c.bot && m[2].toLowerCase() === c.bot.toLowerCase()) u.searchParams.set('start', c.code);
          else return;
          if (l.href !== u.href) l.href = u.href;
        } catch (e) { /* a link we cannot read stays as the site wrote it */ }
      });
    }
    function got(c) { if (c.code) { cur = c; mark(c); } }
    function get() {
      var c;
      if (!st.sid || !links().length) return;
      try { c = JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch (e) { c = null; }
      if (c && c.sid === st.sid) return got(c);
      fetch(base + '/v/mc', { method: 'POST', body: JSON.stringify({ k: a.key, sid: st.sid }) })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (c) {
          if (!c) return;
          c.sid = st.sid; // kept even without a code: the site has no messenger set up, ask no more
          try { sessionStorage.setItem(KEY, JSON.stringify(c)); } catch (e) { /* private mode: asked again next page */ }
          got(c);
        }).catch(function () { /* the links work without the code */ });
    }
    d.addEventListener('click', function () { if (cur) mark(cur); }, true); // links a page added later
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', get); else get();
  })();
})(window, document);
