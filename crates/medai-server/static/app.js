// medai pages: the only script. Served from /static/app.js (the CSP allows no inline script).
// 1. The idle-logoff warning, one minute before the session's idle timeout, with a button that
//    keeps the session (a GET of /api/v1/auth/session counts as activity).
// 2. Streaming an answer into the chat view from the JSON API's server-sent events; without
//    this script the form posts and the page shows the whole answer when it is complete.
"use strict";

(function idleWarning() {
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle-seconds") || "0", 10);
  var box = document.getElementById("idle-warning");
  if (!idle || !box) { return; }
  var warnTimer = null;
  var endTimer = null;
  function signOutNow() {
    var here = window.location.pathname + window.location.search;
    window.location.assign("/login?expired=1&next=" + encodeURIComponent(here));
  }
  function arm() {
    window.clearTimeout(warnTimer);
    window.clearTimeout(endTimer);
    box.hidden = true;
    warnTimer = window.setTimeout(function () {
      box.hidden = false;
      var btn = document.getElementById("stay-signed-in");
      if (btn) { btn.focus(); }
    }, Math.max(idle - 60, 1) * 1000);
    endTimer = window.setTimeout(signOutNow, idle * 1000);
  }
  document.addEventListener("medai:activity", arm);
  var stay = document.getElementById("stay-signed-in");
  if (stay) {
    stay.addEventListener("click", function (ev) {
      ev.preventDefault();
      fetch("/api/v1/auth/session", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (r.ok) { arm(); } else { signOutNow(); } })
        .catch(function () { signOutNow(); });
    });
  }
  arm();
})();

(function streamAnswers() {
  var form = document.getElementById("ask-form");
  if (!form || !window.fetch || !window.TextDecoder) { return; }
  var url = form.getAttribute("data-stream-url");
  var out = document.getElementById("live-answer");
  var status = document.getElementById("live-status");
  if (!url || !out || !status) { return; }
  form.addEventListener("submit", function (ev) {
    var field = form.querySelector("textarea[name=text]");
    var text = field ? field.value : "";
    if (!text.trim()) { return; }
    ev.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    document.dispatchEvent(new Event("medai:activity"));
    out.hidden = false;
    out.textContent = "";
    var escal = document.getElementById("live-escalation");
    var answerText = document.createElement("p");
    answerText.className = "text";
    answerText.id = "live-answer-text";
    out.appendChild(answerText);
    status.textContent = "The assistant is answering…";
    // The question, accepted, joins the conversation above the answer that streams in (the
    // reload at the end shows the stored one in its place).
    function showQuestion(q) {
      var list = document.querySelector("ol.messages");
      if (!list) { return; }
      var none = document.getElementById("no-questions");
      if (none) { none.hidden = true; }
      var li = document.createElement("li");
      li.className = "message question";
      li.id = "live-question";
      var meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = "Question · just now";
      var p = document.createElement("p");
      p.className = "text";
      p.textContent = q;
      li.appendChild(meta);
      li.appendChild(p);
      list.appendChild(li);
    }
    function fail(message) {
      status.textContent = message;
      status.setAttribute("role", "alert");
      if (button) { button.disabled = false; }
    }
    function handle(name, data) {
      var d;
      try { d = JSON.parse(data); } catch (e) { return; }
      if (name === "escalation" && escal) {
        escal.hidden = false;
        (d.rules || []).forEach(function (r) {
          var sec = document.createElement("section");
          sec.className = "escalation";
          var h = document.createElement("h3");
          h.textContent = "Escalation: " + r.title;
          var p = document.createElement("p");
          p.textContent = r.notice;
          sec.appendChild(h);
          sec.appendChild(p);
          escal.appendChild(sec);
        });
      } else if (name === "delta") {
        answerText.textContent += d.text || "";
      } else if (name === "done") {
        var m = (d.provenance && d.provenance.model) || {};
        var meta = document.createElement("p");
        meta.className = "meta";
        meta.textContent = "Model " + (m.id || "unknown") + ", version " + (m.version || "unknown");
        out.appendChild(meta);
        status.textContent = "Answer complete. Loading the conversation with feedback buttons…";
        window.setTimeout(function () { window.location.reload(); }, 1500);
      } else if (name === "error") {
        fail("The answer was interrupted: " + (d.message || "unknown error") + ".");
      }
    }
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: JSON.stringify({ text: text })
    }).then(function (resp) {
      if (!resp.ok || !resp.body) {
        return resp.json().then(function (b) {
          fail((b && b.error && b.error.message) ? "The assistant could not answer: " + b.error.message + "." : "The assistant could not answer.");
        }, function () { fail("The assistant could not answer."); });
      }
      if (field) { field.value = ""; }
      showQuestion(text);
      var reader = resp.body.getReader();
      var decoder = new TextDecoder();
      var buf = "";
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) { return; }
          buf += decoder.decode(r.value, { stream: true }).replace(/\r\n/g, "\n");
          var i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            var block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            var name = "message";
            var data = [];
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) { name = line.slice(6).trim(); }
              else if (line.indexOf("data:") === 0) { data.push(line.slice(5).replace(/^ /, "")); }
            });
            if (data.length) { handle(name, data.join("\n")); }
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () { fail("The connection was lost before the answer was complete."); });
  });
})();
