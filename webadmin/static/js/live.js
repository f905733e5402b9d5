// Live board: redraw the two tables from the SSE "board" event.  Text only (textContent), never HTML.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var cardUrl = board.getAttribute("data-card-url");

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
    var calls = document.getElementById("live-calls");
    calls.replaceChildren();
    state.calls.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.className = "state-" + (c.state === "up" ? "up" : "ringing");
      cell(tr, c.state);
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
      tr.className = "dev-" + String(m.device_state).toLowerCase().replace(/[^a-z_]/g, "");
      cell(tr, m.name); cell(tr, m.endpoint);
      cell(tr, m.device_state + (m.paused ? " (paused)" : ""));
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
