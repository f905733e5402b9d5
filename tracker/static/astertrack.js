/* astertrack: dynamic number insertion.  Plain JS, no dependencies.
 * <script async src="/ct/v.js" data-key="SITE_PUBLIC_KEY"></script>
 * The API lives next to the script (same directory), so serving both from a path on the
 * customer's own domain keeps them first-party.  On any failure the page keeps its number. */
(function (w, d) {
  'use strict';
  var me = d.currentScript;
  if (!me || w.__astertrack || !w.fetch || !w.JSON) return;
  w.__astertrack = 1;
  var key = me.getAttribute('data-key') || '';
  var base = me.src.replace(/[?#].*$/, '').replace(/\/[^\/]*$/, '');
  var wait = +me.getAttribute('data-timeout') || 3000;
  var debug = /[?&]astertrack_debug=1(&|$)/.test(location.search);
  var PHONE = /\+?\d[\d\s().\u00a0-]{5,}\d/g;
  var SKIP = /^(SCRIPT|STYLE|NOSCRIPT|TEXTAREA|INPUT|SELECT|OPTION|TEMPLATE)$/;
  var NOSWAP = '[data-astertrack-noswap]';
  var st = { sid: get('astertrack_sid'), num: '', disp: '', old: {}, sel: [], repl: {}, timer: 0,
    touched: false, claimed: false, info: null, err: '' };
  var box;

  function get(k) { try { return w.localStorage.getItem(k) || ''; } catch (e) { return ''; } }
  function put(k, v) { try { w.localStorage.setItem(k, v); } catch (e) { /* private mode */ } }
  function cookie(name) {
    var m = d.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
    try { return m ? decodeURIComponent(m[1]) : ''; } catch (e) { return ''; }
  }
  function tail(s) { return String(s).replace(/\D/g, '').slice(-10); }
  function vid() {
    var v = get('astertrack_vid');
    if (!v) {
      v = (Date.now().toString(36) + Math.random().toString(36).slice(2, 12));
      put('astertrack_vid', v);
      st.fresh = true;
    }
    return v;
  }

  function post(path, body, cb) {
    var done = false, ctl = w.AbortController ? new AbortController() : null;
    function fin(r) { if (!done) { done = true; clearTimeout(t); cb(r); } }
    var t = setTimeout(function () { if (ctl) ctl.abort(); fin(null); }, wait);
    body.k = key;
    fetch(base + path, { method: 'POST', body: JSON.stringify(body), credentials: 'omit', mode: 'cors',
      signal: ctl ? ctl.signal : undefined })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(fin, function () { fin(null); });
  }

  function visit() {
    var q = new URLSearchParams(location.search), v = {
      visitor_id: vid(), ga_client_id: cookie('_ga'), ym_client_id: cookie('_ym_uid'),
      referrer: d.referrer, landing_page: location.href, current_page: location.href,
      user_agent: navigator.userAgent, sid: st.sid, wd: !!navigator.webdriver, debug: debug,
      interacted: st.touched, new: !!st.fresh
    };
    st.fresh = false;
    ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term', 'gclid', 'yclid', 'fbclid']
      .forEach(function (n) { if (q.get(n)) v[n] = q.get(n); });
    return v;
  }

  function start() {
    post('/v/start', visit(), function (r) {
      if (!r) { st.err = 'API unreachable or slow: original number kept'; return show(); }
      apply(r);
    });
  }

  function ping() {
    if (!st.sid) return;
    post('/v/ping', { sid: st.sid, page: location.href, interacted: st.touched, debug: debug }, function (r) {
      if (!r) { st.err = 'heartbeat failed, retrying'; beat(st.info); return show(); }
      if (r.live === false) { st.sid = ''; return start(); }
      apply(r);
    });
  }

  function apply(r) {
    st.err = '';
    if (debug && st.info && st.info.debug && r.debug) r.debug.visit = st.info.debug.visit;
    st.info = r;
    if (r.sid) { st.sid = r.sid; put('astertrack_sid', r.sid); }
    st.sel = r.selectors || [];
    (r.replace || []).forEach(function (n) { st.repl[tail(n)] = 1; });
    if (r.number && r.number !== st.num) {
      if (st.num) st.old[tail(st.num)] = 1;
      st.num = r.number;
      st.disp = r.display || r.number;
      delete st.old[tail(st.num)];
      ready(function () { swap(d.body); });
    }
    beat(r);
    if (r.kind === 'lazy') lazy();
    show();
  }

  function beat(r) {
    clearTimeout(st.timer);
    if (r && /^(pool|reused|fallback)$/.test(r.kind) && r.heartbeat > 0) st.timer = setTimeout(ping, r.heartbeat * 1000);
  }

  function known(s) { var t = tail(s); return t.length > 5 && (st.repl[t] || st.old[t]); }

  function text(node, any) {
    var v = node.nodeValue, n = v.replace(PHONE, function (m) {
      return (any || known(m)) && tail(m) !== tail(st.num) ? st.disp : m;
    });
    if (n !== v) node.nodeValue = n;
    return n !== v;
  }

  function walk(root, any) {
    var hit = false, tw = d.createTreeWalker(root, 4, null), n;
    while ((n = tw.nextNode())) {
      var p = n.parentNode;
      if (p && (SKIP.test(p.nodeName) || (box && box.contains(n)) || (p.closest && p.closest(NOSWAP)))) continue;
      if (text(n, any)) hit = true;
    }
    return hit;
  }

  function link(a, any) {
    var h = a.getAttribute('href') || '', n = h.slice(4);
    try { n = decodeURIComponent(n); } catch (e) { /* keep as written */ }
    if (/^tel:/i.test(h) && !a.closest(NOSWAP) && (any || known(n))) a.setAttribute('href', 'tel:' + st.num);
  }

  function each(root, css, fn) {
    if (!root || root.nodeType !== 1) return;
    try {
      if (root.matches(css)) fn(root);
      Array.prototype.forEach.call(root.querySelectorAll(css), fn);
    } catch (e) { /* bad selector from the admin */ }
  }

  function swap(root) {
    if (!st.num || !root || (box && box.contains(root))) return;
    if (root.nodeType === 3) return void text(root, false);
    st.sel.forEach(function (css) {
      each(root, css, function (el) {
        if ((box && box.contains(el)) || el.closest(NOSWAP)) return;
        if (!walk(el, true) && tail(el.textContent) !== tail(st.num)) el.textContent = st.disp;
        if (el.nodeName === 'A') link(el, true);
      });
    });
    walk(root, false);
    each(root, 'a[href^="tel:"],a[href^="TEL:"]', function (a) { link(a, false); });
  }

  function ready(fn) {
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', fn); else fn();
  }

  function observe() {
    if (!w.MutationObserver) return;
    var queue = [], pending = false;
    new MutationObserver(function (list) {
      list.forEach(function (m) {
        if (m.type === 'characterData') queue.push(m.target);
        else Array.prototype.forEach.call(m.addedNodes, function (n) { queue.push(n); });
      });
      if (!pending) {
        pending = true;
        setTimeout(function () { pending = false; var q = queue; queue = []; q.forEach(swap); }, 0);
      }
    }).observe(d.documentElement, { childList: true, subtree: true, characterData: true });
  }

  function navigated() { setTimeout(function () { swap(d.body); ping(); }, 0); }

  function spa() {
    ['pushState', 'replaceState'].forEach(function (name) {
      var orig = history[name];
      if (typeof orig !== 'function') return;
      history[name] = function () { var r = orig.apply(this, arguments); navigated(); return r; };
    });
    w.addEventListener('popstate', navigated);
  }

  function lazy() {
    if (st.claimed) return;
    function claim() {
      if (st.claimed) return;
      st.claimed = st.touched = true;
      start();
    }
    ['scroll', 'pointerdown', 'keydown', 'touchstart', 'mousemove'].forEach(function (e) {
      w.addEventListener(e, claim, { once: true, passive: true });
    });
    if (w.IntersectionObserver) {
      var io = new IntersectionObserver(function (es) {
        es.forEach(function (e) { if (e.isIntersecting) { io.disconnect(); claim(); } });
      });
      ready(function () { st.sel.concat('a[href^="tel:"]').forEach(function (css) { each(d.body, css, function (el) { io.observe(el); }); }); });
    }
  }

  function show() {
    if (!debug) return;
    ready(function () {
      if (!box) {
        box = d.createElement('div');
        box.id = 'astertrack-debug';
        box.style.cssText = 'position:fixed;right:8px;bottom:8px;z-index:2147483647;max-width:420px;' +
          'background:#111;color:#eee;font:12px/1.4 monospace;padding:8px;border-radius:4px;opacity:.92;' +
          'white-space:pre-wrap;word-break:break-all';
        d.body.appendChild(box);
      }
      var r = st.info || {}, dbg = r.debug || {}, rows = [['astertrack', st.err || 'ok'],
        ['source', dbg.source || '(none: site default)'], ['kind', r.kind], ['session', st.sid],
        ['number', st.num ? st.disp + ' ' + st.num : '(original kept)'], ['hold until', r.expires_at || '-']];
      var vis = dbg.visit || {};
      Object.keys(vis).forEach(function (k) { rows.push([k, vis[k]]); });
      while (box.firstChild) box.removeChild(box.firstChild);
      rows.forEach(function (row) {
        var line = d.createElement('div');
        line.textContent = row[0] + ': ' + (row[1] == null ? '' : row[1]);
        box.appendChild(line);
      });
    });
  }

  ['scroll', 'pointerdown', 'keydown', 'touchstart'].forEach(function (e) {
    w.addEventListener(e, function () { st.touched = true; }, { once: true, passive: true });
  });
  w.addEventListener('pagehide', function () {
    if (st.sid && navigator.sendBeacon) navigator.sendBeacon(base + '/v/leave', JSON.stringify({ k: key, sid: st.sid }));
  });
  w.addEventListener('pageshow', function (e) { if (e.persisted) ping(); });
  ready(observe);
  spa();
  start();
})(window, document);
