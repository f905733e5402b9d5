// The chats page (#25): the lists and the open chat follow the "chats" stream; replies, claims,
// transfers, closing, typing and read marks go to the page's JSON endpoints with the CSRF token.
// Everything a visitor typed is set with textContent, never as HTML.
(function () {
  "use strict";
  var root = document.getElementById("chats");
  if (!root) { return; }
  var words = JSON.parse(document.getElementById("chat-words").textContent);
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var chatId = root.hasAttribute("data-chat-id") ? Number(root.getAttribute("data-chat-id")) : null;
  var away = root.getAttribute("data-away") === "yes";
  var lines = document.getElementById("chat-lines");
  var itemTemplate = document.getElementById("chat-item-template");
  var lineTemplate = document.getElementById("chat-line-template");
  var timers = {};  // chat id -> its notification timer
  var notified = {};
  var lastSeq = 0;
  var visitorRead = 0;
  var typingTimer = null;

  function post(url, fields) {
    var body = new URLSearchParams(fields || {});
    body.set("csrf_token", csrf);
    return fetch(url, {method: "POST", body: body, credentials: "same-origin",
                       headers: {"X-CSRFToken": csrf, "Accept": "application/json"}})
      .then(function (r) { return r.json().then(function (b) { return {status: r.status, body: b}; }); });
  }
  function fmt(text, values) {
    return String(text).replace(/%\((\w+)\)s/g, function (_, key) {
      return values[key] == null ? "" : String(values[key]);
    });
  }
  function systemLine(m) {
    var meta = m.meta || {};
    var someone = words.a_manager;
    switch (m.kind) {
      case "claimed": return fmt(words.claimed, {manager: meta.manager || someone});
      case "transferred": return meta.from ? fmt(words.transferred, {source: meta.from, target: meta.to || someone})
                                           : fmt(words.given, {target: meta.to || someone});
      case "asked_phone": return meta.reason === "nobody_available" ? words.asked_nobody : words.asked_late;
      case "contact": return meta.name ? fmt(words.contact_name, {phone: meta.phone || "", name: meta.name})
                                       : fmt(words.contact, {phone: meta.phone || ""});
      case "closed": return meta.by === "visitor" ? words.closed_visitor
        : meta.by === "manager" ? fmt(words.closed_manager, {manager: meta.manager || someone}) : words.closed_system;
      default: return m.kind;
    }
  }
  function when(value) {
    if (!value) { return ""; }
    return new Date(value).toLocaleTimeString(document.documentElement.lang || undefined,
                                              {hour: "2-digit", minute: "2-digit"});
  }
  function waitText(created) {
    var seconds = Math.max(0, Math.round((Date.now() - new Date(created).getTime()) / 1000));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  // ---- the lists

  function fill(node, chat) {
    node.setAttribute("data-chat-id", String(chat.id));
    node.setAttribute("data-created", chat.created_at || "");
    node.setAttribute("data-status", chat.status);
    node.querySelector("a.chat-open").href = root.getAttribute("data-base") + "?chat=" + chat.id;
    node.querySelectorAll("[data-f]").forEach(function (el) {
      var key = el.getAttribute("data-f");
      var value = key === "status_label" ? words.statuses[chat.status] : chat[key];
      if (key === "wait") { return; }
      el.textContent = value == null || value === "" ? "—" : String(value);
    });
  }
  function counts() {
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var n = document.querySelectorAll("#chat-list-" + el.getAttribute("data-count") + " .chat-item").length;
      el.textContent = n ? "(" + n + ")" : "";
    });
    var nav = document.getElementById("nav-chats-count");
    var waiting = document.querySelectorAll("#chat-list-waiting .chat-item").length;
    if (nav) { nav.textContent = String(waiting); nav.hidden = !waiting; }
  }
  function upsert(chat) {
    var node = document.querySelector('.chat-item[data-chat-id="' + chat.id + '"]');
    var list = document.getElementById("chat-list-" + chat.section);
    if (!chat.visible || !list) {
      if (node) { node.remove(); }
    } else {
      if (!node) { node = itemTemplate.content.firstElementChild.cloneNode(true); }
      fill(node, chat);
      if (node.parentNode !== list) {
        var after = Array.prototype.find.call(list.children, function (other) {
          return other.getAttribute("data-created") > (chat.created_at || "");
        });
        list.insertBefore(node, after || null);
      }
    }
    counts();
    schedule(chat);
    if (chatId === chat.id) { paneState(chat); }
  }
  function tick() {
    document.querySelectorAll('#chat-list-waiting .chat-item').forEach(function (node) {
      var el = node.querySelector('[data-f="wait"]');
      if (el) { el.textContent = waitText(node.getAttribute("data-created")); }
    });
  }

  // ---- notifications: a short sound and a desktop notification when a chat is offered to me

  function beep() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    try {
      var ctx = new Context(), osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.4);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.4);
      osc.onended = function () { ctx.close(); };
    } catch (e) { /* no audio device: the list and the count still show it */ }
  }
  function notify(chat) {
    delete timers[chat.id];
    var node = document.querySelector('#chat-list-waiting .chat-item[data-chat-id="' + chat.id + '"]');
    if (!node || notified[chat.id] || away) { return; }
    notified[chat.id] = true;
    node.classList.add("offered");
    beep();
    if (window.Notification && Notification.permission === "granted") {
      var n = new Notification(words.new_chat, {body: [chat.site, chat.source].filter(Boolean).join(" · "),
                                                tag: "astertrack-chat-" + chat.id});
      n.onclick = function () { window.focus(); window.location.href = root.getAttribute("data-base") + "?chat=" + chat.id; };
    }
  }
  function schedule(chat) {
    if (timers[chat.id]) { clearTimeout(timers[chat.id]); delete timers[chat.id]; }
    if (chat.notify_in == null || !chat.visible || notified[chat.id]) { return; }
    timers[chat.id] = setTimeout(function () { notify(chat); }, Math.max(0, chat.notify_in * 1000));
  }
  var permission = document.getElementById("chat-notify-permission");
  if (permission && window.Notification && Notification.permission === "default") {
    permission.hidden = false;
    permission.addEventListener("click", function () {
      Notification.requestPermission().then(function () { permission.hidden = Notification.permission !== "default"; });
    });
  }
  var awayButton = document.getElementById("chat-away");
  if (awayButton) {
    awayButton.addEventListener("click", function () {
      post(root.getAttribute("data-away-url"), away ? {} : {away: "y"}).then(function (r) {
        if (!r.body.ok) { return; }
        away = r.body.away;
        awayButton.className = away ? "away" : "available";
        awayButton.setAttribute("aria-pressed", away ? "true" : "false");
        awayButton.textContent = awayButton.getAttribute(away ? "data-away-label" : "data-available");
      });
    });
  }

  // ---- the open chat

  function lineNode(m) {
    var node = lineTemplate.content.firstElementChild.cloneNode(true);
    node.setAttribute("data-author", m.author);
    node.setAttribute("data-seq", String(m.seq));
    node.querySelector("time").setAttribute("datetime", m.at || "");
    node.querySelector("time").textContent = when(m.at);
    node.querySelector(".who").textContent = m.author === "visitor" ? words.visitor : (m.who || m.meta && m.meta.manager || "");
    node.querySelector(".text").textContent = m.author === "system" ? (m.line || systemLine(m)) : (m.text || "");
    if (m.author === "manager") {
      var mark = document.createElement("small");
      mark.className = "read-mark";
      mark.textContent = "✓✓";
      mark.title = words.read;
      node.appendChild(document.createTextNode(" "));
      node.appendChild(mark);
      if (m.seq <= visitorRead) { node.classList.add("read"); }
    }
    return node;
  }
  function add(m) {
    if (!lines || m.seq <= lastSeq) { return; }
    if (m.seq > lastSeq + 1) { fetchGap(); return; }
    lines.appendChild(lineNode(m));
    lastSeq = m.seq;
    lines.lastElementChild.scrollIntoView({block: "nearest"});
    if (m.author === "visitor") { markRead(); }
  }
  var fetching = false;
  function fetchGap() {
    if (fetching || !chatId) { return; }
    fetching = true;
    fetch(root.getAttribute("data-messages-url") + "?after=" + lastSeq, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (b) {
        fetching = false;
        (b.messages || []).forEach(function (m) { if (m.seq === lastSeq + 1) { add(m); } });
        if (b.chat) { paneState(b.chat); }
      }, function () { fetching = false; });
  }
  function paneState(chat) {
    visitorRead = chat.visitor_read_seq || 0;
    if (lines) {
      lines.querySelectorAll('.chat-line[data-author="manager"]').forEach(function (node) {
        node.classList.toggle("read", Number(node.getAttribute("data-seq")) <= visitorRead);
      });
    }
    var status = document.getElementById("chat-status");
    if (status && status.getAttribute("data-status") !== chat.status) {
      status.setAttribute("data-status", chat.status);
      status.textContent = words.statuses[chat.status];
    }
    var typing = document.getElementById("chat-typing");
    if (typing) {
      clearTimeout(typingTimer);
      typing.hidden = !(chat.typing_seconds > 0);
      if (chat.typing_seconds > 0) { typingTimer = setTimeout(function () { typing.hidden = true; }, chat.typing_seconds * 1000); }
    }
    if (chat.seq > lastSeq) { fetchGap(); }
  }
  var reply = document.getElementById("chat-reply");
  var readSent = 0;
  function markRead() {
    if (!reply || document.hidden || lastSeq <= readSent) { return; }
    readSent = lastSeq;
    post(reply.getAttribute("data-read-url"), {seq: String(lastSeq)});
  }
  if (lines) {
    lines.querySelectorAll(".chat-line").forEach(function (node) {
      lastSeq = Math.max(lastSeq, Number(node.getAttribute("data-seq")));
      var time = node.querySelector("time");
      time.textContent = when(time.getAttribute("datetime"));
    });
    if (lines.lastElementChild) { lines.lastElementChild.scrollIntoView({block: "nearest"}); }
    markRead();
    document.addEventListener("visibilitychange", markRead);
  }
  if (reply) {
    var text = document.getElementById("chat-text");
    var error = document.getElementById("chat-reply-error");
    var pending = null;  // {text, id}: a message not acknowledged yet keeps its id, so a retry stores once
    var lastTyping = 0;
    var newId = function () { return "m" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10); };
    var send = function () {
      var value = text.value.trim();
      if (!value) { return; }
      if (!pending || pending.text !== value) { pending = {text: value, id: newId()}; }
      var sending = pending;
      error.textContent = "";
      post(reply.action, {text: sending.text, client_id: sending.id}).then(function (r) {
        if (!r.body.ok) { error.textContent = r.body.error || words.failed; return; }
        if (pending === sending) { pending = null; if (text.value.trim() === sending.text) { text.value = ""; } }
        if (r.body.message) { add(r.body.message); }
        if (r.body.chat) { paneState(r.body.chat); }
      }, function () { error.textContent = words.failed; });
    };
    reply.addEventListener("submit", function (event) { event.preventDefault(); send(); });
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
    });
    text.addEventListener("input", function () {
      var now = Date.now();
      if (now - lastTyping < 3000 || !text.value) { return; }
      lastTyping = now;
      post(reply.getAttribute("data-typing-url"), {});
    });
  }
  document.querySelectorAll(".chat-actions form[data-action]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var fields = {};
      new FormData(form).forEach(function (value, key) { fields[key] = value; });
      post(form.action, fields).then(function (r) {
        if (r.body.ok) { window.location.reload(); return; }
        document.getElementById("chat-action-error").textContent = r.body.error || "";
      });
    });
  });

  // ---- start: the page holds the state; the stream brings the changes

  counts();
  tick();
  setInterval(tick, 1000);
  try {
    var initial = JSON.parse(document.getElementById("chat-initial").textContent);
    initial.forEach(schedule);
  } catch (e) { /* no initial list */ }
  if (window.EventSource) {
    var source = new EventSource(root.getAttribute("data-stream"));
    source.addEventListener("chat", function (event) { upsert(JSON.parse(event.data)); });
    source.addEventListener("message", function (event) {
      var m = JSON.parse(event.data);
      if (m.chat_id === chatId) { add(m); }
    });
  }
})();
