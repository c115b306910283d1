// The floating support button: <script src="https://support.example/portal/SLUG/widget.js" async></script>
// (or /static/widget.js with data-workspace="SLUG"). Opens the submit form, with its
// knowledge-base suggestions, in an iframe; nothing of the host page is read or sent.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || window.__workestraWidget) { return; }
  window.__workestraWidget = true;
  var src = new URL(me.src, location.href);
  var m = src.pathname.match(/\/portal\/([^/]+)\/widget\.js$/);
  var slug = me.getAttribute("data-workspace") || (m && decodeURIComponent(m[1]));
  if (!slug) { return; }
  var color = me.getAttribute("data-color") || "#2563eb";
  var label = me.getAttribute("data-label") || "Support";
  var formUrl = src.origin + "/portal/" + encodeURIComponent(slug) + "/submit?embed=1";

  var button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", "workestra-widget-frame");
  button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483646;" +
    "border:0;border-radius:999px;padding:12px 20px;font:600 15px/1 system-ui,sans-serif;" +
    "color:#fff;background:" + color + ";box-shadow:0 6px 20px rgba(0,0,0,.25);cursor:pointer";

  var frame = null;
  function toggle() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = "workestra-widget-frame";
      frame.title = label + " request form";
      frame.src = formUrl;
      frame.style.cssText = "position:fixed;right:20px;bottom:76px;z-index:2147483647;" +
        "width:min(420px,calc(100vw - 40px));height:min(640px,calc(100vh - 110px));" +
        "border:0;border-radius:12px;box-shadow:0 12px 40px rgba(0,0,0,.3);background:#fff";
      document.body.appendChild(frame);
    } else {
      frame.hidden = !frame.hidden;
    }
    button.setAttribute("aria-expanded", frame.hidden ? "false" : "true");
  }
  button.addEventListener("click", toggle);
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && frame && !frame.hidden) { toggle(); button.focus(); }
  });
  (document.body || document.documentElement).appendChild(button);
})();
