// Adds to forms that work without it: live character counters and knowledge-base deflection.
(function () {
  "use strict";

  function fmt(n) { return n.toLocaleString("en-US"); }

  document.querySelectorAll("textarea[data-max]").forEach(function (area) {
    var max = parseInt(area.getAttribute("data-max"), 10);
    var out = document.getElementById(area.id + "-count");
    if (!out) { return; }
    function update() {
      var n = area.value.replace(/\r\n/g, "\n").length;
      out.textContent = fmt(n) + " / " + fmt(max) + " characters" +
        (n > max ? " (" + fmt(n - max) + " too many)" : "");
      out.classList.toggle("over", n > max);
    }
    area.addEventListener("input", update);
    update();
  });

  var form = document.getElementById("submit-form");
  var subject = document.getElementById("subject");
  var panel = document.getElementById("deflect");
  if (!form || !subject || !panel) { return; }
  var slug = form.getAttribute("data-slug");
  var session = form.getAttribute("data-session");
  var list = document.getElementById("deflect-list");
  var dismissed = false;
  var timer = null;
  var last = "";

  function post(event, articleId) {
    var body = JSON.stringify({slug: slug, session: session, event: event,
                               article_id: articleId || null});
    fetch("/api/public/kb/events", {method: "POST", body: body, keepalive: true,
                                    headers: {"Content-Type": "application/json"}});
  }

  function show(articles) {
    list.textContent = "";
    articles.forEach(function (a) {
      var li = document.createElement("li");
      var link = document.createElement("a");
      link.href = a.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = a.title;
      var snip = document.createElement("span");
      snip.className = "snippet";
      snip.textContent = a.snippet;
      li.appendChild(link);
      li.appendChild(snip);
      list.appendChild(li);
    });
    panel.hidden = articles.length === 0;
  }

  function search() {
    var q = subject.value.trim();
    if (dismissed || q === last) { return; }
    last = q;
    if (q.length < 3) { show([]); return; }
    var url = "/api/public/kb/search?slug=" + encodeURIComponent(slug) + "&q=" +
      encodeURIComponent(q) + "&session=" + encodeURIComponent(session);
    fetch(url).then(function (r) { return r.ok ? r.json() : {articles: []}; })
      .then(function (data) { if (!dismissed && subject.value.trim() === q) { show(data.articles); } })
      .catch(function () { show([]); });
  }

  subject.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(search, 200);
  });
  document.getElementById("deflect-dismiss").addEventListener("click", function () {
    dismissed = true;
    panel.hidden = true;
    post("dismissed");
    subject.focus();
  });
})();
