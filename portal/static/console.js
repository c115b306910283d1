// The console's few live bits; every page works without them.
// Copy buttons, the unread-notifications badge (polled), and the branding live preview.
"use strict";

(function () {
  var POLL_MS = 15000;

  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied!";
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(); });
    } else {
      fallback();
    }
    function fallback() {
      var field = document.getElementById(button.dataset.copy);
      field.focus();
      field.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    }
  }

  function setupCopy() {
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      var field = document.getElementById(button.dataset.copy);
      if (!field) { return; }
      button.hidden = false;
      button.addEventListener("click", function () { copyText(field.value, button); });
    });
  }

  function setupBadge() {
    var badge = document.getElementById("unread-badge");
    if (!badge || !badge.dataset.countUrl) { return; }
    function show(n) {
      badge.textContent = String(n);
      badge.setAttribute("aria-label", n + " unread");
      badge.classList.toggle("zero", n === 0);
    }
    function poll() {
      fetch(badge.dataset.countUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data && typeof data.unread === "number") { show(data.unread); } })
        .catch(function () { /* offline for a moment: the next poll tries again */ });
    }
    setInterval(poll, POLL_MS);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { poll(); }
    });
  }

  function inkFor(hex) {
    var h = hex.slice(1);
    if (h.length === 3) { h = h[0] + h[0] + h[1] + h[1] + h[2] + h[2]; }
    var r = parseInt(h.slice(0, 2), 16), g = parseInt(h.slice(2, 4), 16), b = parseInt(h.slice(4, 6), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b > 160 ? "#111827" : "#ffffff";
  }

  function setupPreview() {
    var preview = document.getElementById("brand-preview");
    if (!preview) { return; }
    var header = document.getElementById("preview-header");
    var button = document.getElementById("preview-button");
    var name = document.getElementById("preview-name");
    var logo = document.getElementById("preview-logo");
    var mail = document.getElementById("preview-email");
    var colour = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/;
    var handlers = {
      name: function (v) { name.textContent = v.trim() || preview.dataset.defaultName; },
      color: function (v) {
        var c = colour.test(v.trim()) ? v.trim() : preview.dataset.defaultColor;
        [header, button].forEach(function (el) { el.style.background = c; el.style.color = inkFor(c); });
      },
      logo: function (v) {
        v = v.trim();
        var ok = /^https?:\/\/\S+$/i.test(v) || /^\/(?!\/)\S*$/.test(v);
        logo.hidden = !ok;
        if (ok) { logo.src = v; } else { logo.removeAttribute("src"); }
      },
      email: function (v) { mail.textContent = v.trim(); }
    };
    document.querySelectorAll("[data-preview]").forEach(function (input) {
      var update = handlers[input.dataset.preview];
      if (!update) { return; }
      input.addEventListener("input", function () { update(input.value); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCopy();
    setupBadge();
    setupPreview();
  });
})();
