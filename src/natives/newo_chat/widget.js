// The newo_chat web-chat widget: one script a site includes to get a chat window on a
// newo_chat connector. Attributes of its <script> tag:
//   data-client-secret  the connector's CLIENT_SECRET (required)
//   data-socket         the socket.io base URL (the daemon's newo_chat.listen, or a proxy's)
//   data-api            the REST API's base URL (default: where this script came from)
//   data-external-id    the visitor's id (default: one kept in localStorage)
//   data-name           the visitor's name (default: "Visitor")
// It creates the actor, connects socket.io (WebSocket) and sends user_message events; the
// text of every send_message command the agent sends is shown.
(function () {
  "use strict";
  var me = document.currentScript;
  var api = me.dataset.api || new URL(me.src).origin;
  var secret = me.dataset.clientSecret;
  var socketBase = me.dataset.socket || api;
  var name = me.dataset.name || "Visitor";
  var externalId = me.dataset.externalId;
  if (!externalId) {
    externalId = localStorage.getItem("newo-chat-external-id");
    if (!externalId) {
      externalId = "visitor-" + Math.random().toString(36).slice(2);
      localStorage.setItem("newo-chat-external-id", externalId);
    }
  }
  var root = document.createElement("div");
  root.id = "newo-chat";
  root.innerHTML =
    '<div id="newo-chat-status">connecting</div><div id="newo-chat-log"></div>' +
    '<input id="newo-chat-input" autocomplete="off"><button id="newo-chat-send">Send</button>';
  document.body.appendChild(root);
  var log = root.querySelector("#newo-chat-log");
  var status = root.querySelector("#newo-chat-status");
  var input = root.querySelector("#newo-chat-input");
  function show(who, text) {
    var p = document.createElement("p");
    p.className = "newo-chat-" + who;
    p.textContent = text;
    log.appendChild(p);
  }
  function post(path, body) {
    return fetch(api + "/api/internal/v1/talking-head/" + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(function (v) {
        if (!r.ok) throw new Error((v.error && v.error.message) || r.status);
        return v;
      });
    });
  }
  var connector;
  function start() {
    fetch(api + "/api/internal/v1/talking-head/chat-settings?client_secret=" + encodeURIComponent(secret))
      .then(function (r) { return r.json(); })
      .then(function (s) {
        connector = s.connector_idn;
        return post("create-actor", {
          name: name, external_id: externalId, connector_idn: connector, client_secret: secret,
        });
      })
      .then(function () {
        var socket = window.io(socketBase, {
          transports: ["websocket"],
          query: { client_secret: secret, origin: window.location.origin, external_id: externalId },
        });
        socket.on("connect", function () { status.textContent = "connected"; });
        socket.on("connect_error", function (e) { status.textContent = "refused: " + e.message; });
        socket.on("disconnect", function () { status.textContent = "disconnected"; });
        socket.on("send_message", function (p) {
          var text = (p.arguments || []).filter(function (a) { return a.name === "text"; })[0];
          if (text) show("agent", text.value);
        });
      })
      .catch(function (e) { status.textContent = "error: " + e.message; });
  }
  function send() {
    var text = input.value.trim();
    if (!text || !connector) return;
    input.value = "";
    show("user", text);
    post("send-actor-event", {
      client_secret: secret, connector_idn: connector, event_idn: "user_message",
      external_id: externalId, arguments: [{ name: "text", value: text }],
    }).catch(function (e) { status.textContent = "error: " + e.message; });
  }
  root.querySelector("#newo-chat-send").addEventListener("click", send);
  input.addEventListener("keydown", function (e) { if (e.key === "Enter") send(); });
  var lib = document.createElement("script");
  lib.src = api + "/newo_chat/socket.io.min.js";
  lib.onload = start;
  document.head.appendChild(lib);
})();
