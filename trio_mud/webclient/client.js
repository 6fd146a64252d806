// trio_mud's web client: Evennia's JSON over a WebSocket (v1.evennia.com),
// or over AJAX long polling (/webclientdata) when no WebSocket can open.
// Game text arrives as HTML the server has already escaped; it is the only
// markup ever inserted. Everything else is set as text.
"use strict";

(function () {
  const output = document.getElementById("output");
  const status = document.getElementById("status");
  const promptEl = document.getElementById("prompt");
  const form = document.getElementById("command-form");
  const input = document.getElementById("command");
  const port = document.querySelector('meta[name="trio-mud-websocket-port"]').content;
  const MAX_LINES = 2000;
  const history = [];
  let historyAt = 0;
  let socket = null;
  let ajax = null; // the AJAX session's csessid, when polling instead
  let everOpened = false;
  let retries = 0;
  let passwordMode = false;

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function atBottom() {
    return output.scrollHeight - output.scrollTop - output.clientHeight < 40;
  }

  function append(node) {
    const follow = atBottom();
    output.appendChild(node);
    while (output.childElementCount > MAX_LINES) output.firstElementChild.remove();
    if (follow) output.scrollTop = output.scrollHeight;
  }

  function showHtml(html) {
    const line = document.createElement("div");
    line.className = "line";
    line.innerHTML = html; // escaped by the server (markup.render_html)
    append(line);
  }

  function showText(text, cls) {
    const line = document.createElement("div");
    line.className = "line " + (cls || "");
    line.textContent = text;
    append(line);
  }

  function setPrompt(html, password) {
    promptEl.innerHTML = html; // escaped by the server
    passwordMode = !!password;
    input.type = passwordMode ? "password" : "text";
  }

  function url() {
    const host = location.hostname.includes(":") ? "[" + location.hostname + "]" : location.hostname;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const token = sessionStorage.getItem("trio-mud-token");
    return scheme + "://" + host + ":" + port + "/" + (token ? "?token=" + encodeURIComponent(token) : "");
  }

  function handle(message) {
    if (!Array.isArray(message)) return;
    const [cmdname, args, kwargs] = message;
    if (cmdname === "text") {
      setPrompt("", false);
      for (const html of args) showHtml(html);
    } else if (cmdname === "prompt") {
      setPrompt(args[0] || "", kwargs && kwargs.password);
    } else if (cmdname === "session") {
      sessionStorage.setItem("trio-mud-token", kwargs.token);
      if (kwargs.resumed) showText("(reconnected: your session carried on)", "echo");
    }
    // Other commands are out-of-band data this page does not use.
  }

  function retryIn() {
    retries += 1;
    return Math.min(30, 2 ** Math.min(retries - 1, 5));
  }

  function connect() {
    if (typeof window.WebSocket !== "function") {
      ajaxConnect();
      return;
    }
    setStatus("connecting", retries ? "Reconnecting…" : "Connecting…");
    let opened = false;
    socket = new WebSocket(url(), ["v1.evennia.com"]);
    socket.onopen = function () {
      opened = true;
      everOpened = true;
      retries = 0;
      setStatus("connected", "Connected");
    };
    socket.onmessage = function (event) {
      try {
        handle(JSON.parse(event.data));
      } catch (error) {
        // not JSON: ignore
      }
    };
    socket.onclose = function () {
      socket = null;
      if (!opened && !everOpened) {
        // It never opened (a proxy that blocks upgrades, say): use AJAX.
        ajaxConnect();
        return;
      }
      const delay = retryIn();
      setStatus("lost", "Connection lost; retrying in " + delay + " s");
      setTimeout(connect, delay * 1000);
    };
  }

  // -- AJAX long polling, when no WebSocket opens --------------------------------------

  function post(fields) {
    return fetch("/webclientdata", { method: "POST", body: new URLSearchParams(fields) }).then(
      function (reply) {
        return reply.ok ? reply.json() : Promise.reject(reply.status);
      }
    );
  }

  function ajaxLost() {
    ajax = null;
    const delay = retryIn();
    setStatus("lost", "Connection lost (AJAX); retrying in " + delay + " s");
    setTimeout(ajaxConnect, delay * 1000);
  }

  function ajaxConnect() {
    setStatus("connecting", "Connecting over AJAX (no WebSocket)…");
    post({ mode: "init" }).then(function (reply) {
      ajax = reply.csessid;
      retries = 0;
      setStatus("connected", "Connected (AJAX: WebSocket unavailable)");
      poll(ajax);
    }, ajaxLost);
  }

  function poll(csessid) {
    if (ajax !== csessid) return;
    post({ mode: "receive", csessid: csessid }).then(function (reply) {
      for (const message of reply.messages) handle(message);
      poll(csessid);
    }, ajaxLost);
  }

  function send(message) {
    if (ajax) {
      post({ mode: "input", csessid: ajax, data: JSON.stringify(message) }).catch(ajaxLost);
      return true;
    }
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value;
    if (!send(["text", [text], {}])) return;
    if (passwordMode) {
      showText("(password sent)", "echo");
    } else {
      // Never echo a password typed on the "connect"/"create" line, and
      // never keep it in the up-arrow history: only "connect name " is kept.
      const login = /^(\s*(?:connect|conn|con|co|create|cre|cr)\s+\S+\s+)\S.*$/i.exec(text);
      showText("> " + (login ? login[1] + "********" : text), "echo");
      const kept = login ? login[1] : text;
      if (kept && history[history.length - 1] !== kept) history.push(kept);
    }
    historyAt = history.length;
    input.value = "";
  });

  input.addEventListener("keydown", function (event) {
    if (passwordMode) return;
    if (event.key === "ArrowUp" && historyAt > 0) {
      historyAt -= 1;
      input.value = history[historyAt];
      event.preventDefault();
    } else if (event.key === "ArrowDown" && historyAt < history.length) {
      historyAt += 1;
      input.value = historyAt < history.length ? history[historyAt] : "";
      event.preventDefault();
    }
  });

  connect();
  input.focus();
})();
