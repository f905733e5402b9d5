/* astertrack: dynamic number insertion, plain JS (usage: tracker/__init__.py).  On any failure the
 * page keeps its number.  Numbers match by digits, across inline elements; no layout is read.
 * Forms marked data-astertrack-form (or astertrack.form(el)) load f.js; j.js the journey.  Opt-out:
 * docs/journey.md. */
(function (w, d) {
  'use strict';
  var me = d.currentScript;
  if (!me || w.__astertrack || !w.AbortController || w.astertrackOptOut === true || /(^|; )astertrack_optout=1/.test(d.cookie) ||
    (me.hasAttribute('data-gpc') && navigator.globalPrivacyControl === true)) return;
  w.__astertrack = 1;
  var key = me.getAttribute('data-key') || '';
  var base = me.src.replace(/[?#].*$/, '').replace(/\/[^\/]*$/, '');
  var wait = +me.getAttribute('data-timeout') || 3000;
  var debug = /[?&]astertrack_debug=1(&|$)/.test(location.search);
  var INLINE = /^(A|B|I|U|S|EM|STRONG|SPAN|SMALL|FONT|MARK|NOBR|LABEL)$/;
  var GAP = /^[\s().\u2010-\u2015-]*$/; // may join digits
  var LINK = /^(tel|sms|viber|whatsapp):|^https?:\/\/(wa\.me|api\.whatsapp\.com|t\.me)\//i;
  var NOSWAP = 'script,style,noscript,textarea,option,[data-astertrack-noswap]'; // text never touched
  var ALL = function () { return 1; };
  var EV = ['scroll', 'pointerdown', 'keydown', 'touchstart'];
  var st = { sid: get('astertrack_sid'), num: '', css: '', k: {}, n: 0, f: [] };
  var box, mine = new WeakMap(); // our writes
  w.astertrack = { key: key, st: st, form: forms, go: start };

  function get(k) { try { return w.localStorage.getItem(k) || ''; } catch (e) { return ''; } }
  function put(k, v) { try { w.localStorage.setItem(k, v); } catch (e) { /* private mode */ } }
  function cookie(name) {
    var m = d.cookie.match('(?:^|; )' + name + '=([^;]*)');
    try { return m ? decodeURIComponent(m[1]) : ''; } catch (e) { return ''; }
  }
  function digits(s) { return String(s).replace(/\D+/g, ''); }
  function tail(s) { return digits(s).slice(-10); }
  function vid() {
    var v = get('astertrack_vid');
    if (!v) {
      v = Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
      put('astertrack_vid', v);
      st.fresh = true;
    }
    return v;
  }

  function post(path, body, cb) {
    var done, ctl = new AbortController();
    function fin(r) { if (!done) { done = true; clearTimeout(t); cb(r); } }
    var t = setTimeout(function () { ctl.abort(); fin(null); }, wait);
    body.k = key;
    fetch(base + path, { method: 'POST', body: JSON.stringify(body), credentials: 'omit', signal: ctl.signal })
      .then(function (r) { // a refusal says why
        return r.json().then(function (j) { return r.ok ? j : { failed: j.error || 'HTTP ' + r.status }; }, function () { return null; });
      })
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
      if (!r || r.failed) {
        st.err = (r ? r.failed + ' (data-key "' + key + '")' : 'API unreachable or slow') + ': original number kept';
        return show();
      }
      apply(r);
    });
  }

  function ping() {
    if (!st.sid) return;
    post('/v/ping', { sid: st.sid, page: location.href, interacted: st.touched, debug: debug, ev: st.take && st.take() }, function (r) {
      if (!r || r.failed) { st.err = 'heartbeat failed, retrying'; beat(st.info); return show(); }
      if (r.live === false) { st.sid = ''; return start(); }
      apply(r);
    });
  }

  function apply(r) {
    st.err = '';
    if (debug && st.info && st.info.debug && r.debug) r.debug.visit = st.info.debug.visit;
    st.info = r;
    if (r.sid) { st.sid = r.sid; put('astertrack_sid', r.sid); st.js = st.js || load('/j.js'); }
    st.css = (r.selectors || []).filter(function (c) { // not the admin's bad ones
      try { return d.createDocumentFragment().querySelector(c), 1; } catch (e) { return 0; }
    }).join(',');
    (r.replace || []).concat(st.num || []).forEach(function (n) { st.k[tail(n)] = digits(n); }); // and one shown before
    if (r.number && r.number !== st.num) {
      st.num = r.number;
      st.disp = r.display || r.number;
      st.keys = Object.keys(st.k).filter(function (c) { return c !== tail(st.num); });
      st.t = Date.now();
      ready(function () { swap(d.body); });
    }
    beat(r);
    if (r.kind === 'lazy' && !st.claimed) st.lz = 1, st.lazy && st.lazy(); // j.js claims
    show();
  }

  function beat(r) {
    clearTimeout(st.timer);
    if (r && /^(pool|reused|fallback)$/.test(r.kind) && r.heartbeat > 0) st.timer = setTimeout(ping, r.heartbeat * 1000);
  }

  // [from, to, digits] of the site's numbers in L, of any where pick(node)
  function find(L, nid, pick) {
    var P = [], D = '', G = [], used = [], out = [], cur = tail(st.num), i, k;
    L.replace(/\d/g, function (c, i) { // G[k]: digits k-1, k joined (2: by a '(')
      var g = L.slice(P[P.length - 1] + 1, i).replace(/\s+/g, ' ');
      G.push(P[0] >= 0 && g.length < 4 && GAP.test(g) && 1 + /\(/.test(g));
      P.push(i);
      D += c;
    });
    function tight(k) { return P[k] - P[k - 1] < 2 && nid(P[k]) === nid(P[k - 1]); }
    function take(s, e, any) { // any: a '(' only after the first digit
      if (s < 0 || used[s] || e > P.length || tight(s) || tight(e) || (any && !pick(nid(P[s])))) return;
      for (k = s + 1; k < e; k++) if (used[k] || !G[k] || (any && k > s + 1 && G[k] > 1)) return;
      for (k = s; k < e; k++) used[k] = 1;
      var a = P[s], b = P[e - 1] + 1;
      if (L[a - 1] === '(' && L.slice(a, b).indexOf(')') > 0) a--;
      if (L[a - 1] === '+') a--;
      if (D.slice(e - 10, e) !== cur) out.push([a, b, D.slice(s, e)]);
      return 1;
    }
    function any(s) { return (/[78]/.test(D[s]) && take(s, s + 11, 1)) || take(s, s + 10, 1); }
    st.keys.forEach(function (c) {
      var cc = st.k[c].slice(0, -c.length), j = -1;
      while ((j = D.indexOf(c, j + 1)) >= 0) {
        [cc, cc === '7' ? '8' : '0', ''].some(function (p) {
          return D.slice(j - p.length, j) === p && take(j - p.length, j + c.length);
        });
      }
    });
    if (pick) { // one starting or ending a run, then any
      for (i = 0; i <= P.length; i++) if (!G[i]) any(i) || any(i - 11) || any(i - 10);
      for (i = 0; i < P.length; i++) any(i);
    }
    return out;
  }

  // numbers whole as fmt or digit by digit (split ones, links); fmt null: display format in one node
  function fix(vals, pick, fmt) { // an attribute's %XX is one unit
    var at = [0], L = vals.join(''), a = fmt != null, u = a ? L.match(/%[\da-f]{2}|[^]/gi) : L.split('');
    function nid(i) { for (var j = 0; at[j + 1] <= i;) j++; return j; }
    vals.forEach(function (v, i) { at.push(at[i] + v.length); });
    if (a) L = L.replace(/%[\da-f]{2}/gi, function (c) { return String.fromCharCode(parseInt(c.slice(1), 16)); });
    find(L, nid, pick).forEach(function (m) {
      var f = a ? fmt : nid(m[0]) === nid(m[1] - 1) ? st.disp : '', nd = m[2].slice(0, -10) + tail(st.num),
        left = m[2].length, j = 0, i;
      for (i = m[0]; i < m[1]; i++) {
        if (f) u[i] = i === m[0] ? f : '';
        else if (/\d/.test(L[i])) u[i] = --left ? nd[j++] : nd.slice(j);
      }
    });
    return vals.map(function (v, i) { return u.slice(at[i], at[i + 1]).join(''); });
  }

  function texts(run) {
    var vals = run.map(function (n) { return n.nodeValue; }), D = /(\d\D*){7}/.test(vals) && digits(vals);
    if (D && ((st.css && D[9]) || st.keys.some(function (c) { return D.indexOf(c) >= 0; }))) fix(vals, st.css && function (i) { return run[i].parentNode.closest(st.css); })
      .forEach(function (v, i) { if (v !== vals[i]) { run[i].nodeValue = v; mine.set(run[i], v); } });
  }

  function block(n) {
    var p = n.parentNode;
    while (p && p.parentNode && INLINE.test(p.nodeName)) p = p.parentNode;
    return p;
  }

  // attributes, then runs of adjacent text nodes of one block; 20 ms a task (no long task)
  function scan(root, els, tw, run, blk) {
    var n, v;
    function cut() { texts(run); run = []; blk = 0; }
    if (tw) st.t = Date.now();
    if (!tw || !tw.currentNode.isConnected) tw = d.createTreeWalker(root, 4);
    run = run || [];
    for (;;) {
      if (!(++st.n & 15) && Date.now() - st.t > 20) return setTimeout(scan, 0, root, els, tw, run, blk);
      if (els[0]) { label(els.pop()); continue; }
      if (!(n = tw.nextNode())) break;
      v = n.nodeValue;
      if (/\d/.test(v)) {
        if (run[0] && (blk = blk || block(run[0])) !== block(n)) cut();
        if (n.parentNode.closest(NOSWAP)) cut(); else run.push(n);
      } else if (run[0]) {
        if (GAP.test(v)) run.push(n); else cut();
      }
    }
    cut();
  }

  function attr(el, k, fmt, pick) {
    var v = el.getAttribute(k), n = /\d/.test(v) && fix([v], pick, fmt)[0];
    if (n && n !== v) el.setAttribute(k, n);
  }

  function label(el) {
    var h = el.getAttribute('href') || '', pick = st.css && el.closest(st.css) && ALL;
    if (el.closest(NOSWAP)) return;
    if (el.nodeName === 'A' && LINK.test(h)) attr(el, 'href', /^(tel|sms):/i.test(h) ? st.num : '', pick);
    attr(el, 'aria-label', st.disp, pick);
    attr(el, 'title', st.disp, pick);
  }

  function swap(root) {
    if (st.num && !root.closest(NOSWAP)) scan(root, [root].concat([].slice.call(root.querySelectorAll('a[href],[aria-label],[title]'))));
  }

  function ready(fn) {
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', fn); else fn();
  }

  function load(p) { return (d.head.appendChild(d.createElement('script')).src = base + p); }

  function forms(f) {
    if (f) st.f.push(f);
    st.fs = st.fs || load('/f.js');
  }

  function observe() { // the blocks around changes
    if (d.querySelector('[data-astertrack-form]')) forms();
    var queue = [], pending;
    new MutationObserver(function (list) {
      list.forEach(function (m) {
        if (m.type !== 'characterData') queue.push.apply(queue, m.addedNodes);
        else if (mine.get(m.target) !== m.target.nodeValue) queue.push(m.target);
      });
      if (!pending) pending = setTimeout(function () {
        var seen = new Set();
        pending = 0;
        st.t = Date.now();
        queue.splice(0).forEach(function (n) {
          if ((n = n.nodeType === 1 && !INLINE.test(n.nodeName) ? n : block(n)) && n.isConnected) seen.add(n);
        });
        seen.forEach(swap);
      }, 0);
    }).observe(d.documentElement, { childList: true, subtree: true, characterData: true });
  }

  function navigated() { setTimeout(function () { swap(d.body); ping(); }, 0); }

  function spa() {
    ['pushState', 'replaceState'].forEach(function (name) {
      var orig = history[name];
      history[name] = function () { var r = orig.apply(this, arguments); navigated(); return r; };
    });
    w.addEventListener('popstate', navigated);
  }

  function show() {
    if (debug) ready(function () {
      var r = st.info || {}, g = r.debug || {}, v = g.visit, rows = { astertrack: st.err || 'ok',
        source: g.source || '(none: site default)', kind: r.kind, session: st.sid,
        number: st.num ? st.disp + ' ' + st.num : '(original kept)', 'hold until': r.expires_at || '-' };
      if (!box) {
        box = d.body.appendChild(d.createElement('div'));
        box.id = 'astertrack-debug';
        box.setAttribute('data-astertrack-noswap', 1);
        box.style.cssText = 'position:fixed;right:0;bottom:0;z-index:2147483647;padding:8px;' +
          'background:#111;color:#eee;font:12px monospace;white-space:pre-wrap';
      }
      box.textContent = Object.keys(Object.assign(rows, v)).map(function (k) { return k + ': ' + (rows[k] == null ? '' : rows[k]); }).join('\n');
    });
  }

  EV.forEach(function (e) {
    w.addEventListener(e, function () { st.touched = true; }, { once: true, passive: true });
  });
  w.addEventListener('pagehide', function () {
    if (st.sid) navigator.sendBeacon(base + '/v/leave', JSON.stringify({ k: key, sid: st.sid, ev: st.take && st.take() }));
  });
  w.addEventListener('pageshow', function (e) { if (e.persisted) ping(); });
  ready(observe);
  spa();
  start();
})(window, document);
