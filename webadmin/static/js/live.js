// Live board: redraw the two tables from the SSE "board" event.  Text only (textContent), never HTML.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var cardUrl = board.getAttribute("data-card-url");
  // the page's language: code -> label of call states and device states (webadmin/labels.py)
  var labels = JSON.parse(board.getAttribute("data-labels") || "{}");
  function label(vocabulary, code) {
    var known = (labels[vocabulary] || {})[code];
    return known == null ? code : known;
  }

  // whether Asterisk is followed: the banner's messages, the locale and time zone of its times
  var ami = JSON.parse(board.getAttribute("data-ami") || "{}");
  var messages = ami.messages || {};
  function fill(template, values) {
    return String(template || "").replace(/%\((\w+)\)s/g, function (match, key) {
      return values[key] == null ? "" : String(values[key]);
    });
  }
  function clock(iso) {
    var when = new Date(iso);
    function format(options) {
      try { return new Intl.DateTimeFormat(ami.locale, Object.assign({timeZone: ami.timezone}, options)).format(when); }
      catch (e) { return new Intl.DateTimeFormat(ami.locale, options).format(when); }
    }
    var day = {year: "numeric", month: "2-digit", day: "2-digit"};
    var today = new Date(); var sameDay;
    try {
      var f = new Intl.DateTimeFormat("en-CA", Object.assign({timeZone: ami.timezone}, day));
      sameDay = f.format(when) === f.format(today);
    } catch (e) { sameDay = when.toDateString() === today.toDateString(); }
    var time = {hour: "numeric", minute: "2-digit"};
    return format(sameDay ? time : Object.assign({}, day, time));
  }
  function bannerText(status) {
    if (!status || status.followed) { return ""; }
    var problems = status.never_ran ? [messages.never] : status.nodes.filter(function (n) { return n.problem; })
      .map(function (n) { return fill(messages[n.problem], {since: n.since ? clock(n.since) : "", node: n.node}); });
    return fill(messages.consequence, {problems: problems.join("; ")});
  }
  function renderBanner(status) {
    var banner = document.getElementById("ami-banner");
    if (!banner) { return; }
    var text = bannerText(status);
    banner.textContent = text;
    banner.hidden = !text;
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }
  function since(iso) {
    if (!iso) { return ""; }
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }
  function render(state) {
    renderBanner(state.ami);
    var calls = document.getElementById("live-calls");
    calls.replaceChildren();
    state.calls.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.className = "state-" + (c.state === "up" ? "up" : "ringing") + (c.followed === false ? " not-followed" : "");
      var stateCell = cell(tr, label("state", c.state));
      if (c.followed === false) {
        var badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = messages.not_followed;
        stateCell.appendChild(document.createTextNode(" "));
        stateCell.appendChild(badge);
      }
      var td = cell(tr, "");
      var a = document.createElement("a");
      a.href = cardUrl + encodeURIComponent(c.id);
      a.textContent = c.caller;
      td.appendChild(a);
      cell(tr, c.did); cell(tr, c.source); cell(tr, c.campaign); cell(tr, c.manager);
      cell(tr, since(c.answered_at || c.started_at));
      calls.appendChild(tr);
    });
    var managers = document.getElementById("live-managers");
    managers.replaceChildren();
    state.managers.forEach(function (m) {
      var tr = document.createElement("tr");
      var known = m.state_known !== false;  // no listener following Asterisk: the stored state is stale
      tr.className = "dev-" + (known ? String(m.device_state).toLowerCase().replace(/[^a-z_]/g, "") : "unknown");
      cell(tr, m.name); cell(tr, m.endpoint);
      cell(tr, (known ? label("device_state", m.device_state) : messages.unknown)
        + (m.paused ? " (" + (labels.paused || "paused") + ")" : ""));
      managers.appendChild(tr);
    });
  }
  var source = new EventSource(board.getAttribute("data-stream"));
  source.addEventListener("board", function (event) {
    status.textContent = "●";
    render(JSON.parse(event.data));
  });
  source.onerror = function () { status.textContent = "…"; };
})();
