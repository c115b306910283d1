// Adds to forms that work without it: a check of chosen files, live character counters,
// upload progress and knowledge-base deflection.
(function () {
  "use strict";

  function fmt(n) { return n.toLocaleString("en-US"); }

  // Files the server would refuse anyway (too many, past 10 MB, a type off the allowlist)
  // are named next to the field, in the server's own sentences, before anything is sent: a
  // post of them would only end on an error page, or a 413 that loses what was typed. The
  // limits are the server's (portal/submit.py MAX_FILES, portal/api_files.py MAX_FILE_SIZE);
  // the allowlist is the input's accept attribute. The server still checks everything.
  var MAX_FILES = 3;
  var MAX_BYTES = 10 * 1024 * 1024;
  var PROGRAM_EXT = ["exe", "dll", "com", "bat", "cmd", "msi", "scr", "sh", "ps1", "vbs", "js",
                     "jar", "apk", "app", "bin", "elf", "deb", "rpm", "dmg", "pif", "cpl", "lnk"];
  var PAGE_EXT = ["html", "htm", "xhtml", "shtml", "mht", "mhtml", "hta", "php", "xml"];

  // The name as the server reports it (api_files.safe_filename).
  function safeName(name) {
    var base = name.replace(/\\/g, "/").split("/").pop()
      .replace(/[\x00-\x1f\x7f/\\]+/g, "_").replace(/^[ .]+|[ .]+$/g, "");
    return base.slice(-200) || "file";
  }

  function fileProblem(file, allowed) {
    var name = safeName(file.name);
    var ext = name.indexOf(".") >= 0 ? name.split(".").pop().toLowerCase() : "";
    if (file.size > MAX_BYTES) { return name + ": larger than 10 MB."; }
    if (!allowed) { return null; }
    if (PROGRAM_EXT.indexOf(ext) >= 0) {
      return name + ": programs and scripts cannot be attached.";
    }
    if (PAGE_EXT.indexOf(ext) >= 0) {
      return name + ": web pages (HTML) cannot be attached; send a PDF or a screenshot instead.";
    }
    if (allowed.indexOf(ext) < 0) {
      return name + ": files ending ." + (ext || "(none)") + " are not accepted; allowed: " +
        allowed.join(", ");
    }
    return null;
  }

  // What the server would answer for this input's files, or "" when it would take them.
  function fileErrors(input) {
    var files = Array.prototype.slice.call(input.files || []);
    if (!files.length) { return ""; }
    if (files.length > MAX_FILES) { return "At most " + MAX_FILES + " files can be attached."; }
    var kept = input.form.querySelectorAll("input[type=hidden][name=upload]").length;
    if (kept + files.length > MAX_FILES) {
      return "Please attach at most " + MAX_FILES + " files.";
    }
    var accept = input.getAttribute("accept");
    var allowed = accept ? accept.split(",").map(function (a) {
      return a.trim().replace(/^\./, "").toLowerCase();
    }).filter(Boolean).sort() : null;
    return files.map(function (f) { return fileProblem(f, allowed); })
      .filter(Boolean).join(" ");
  }

  // Shows or clears the error as the server's page marks it (_macros.html): <p class="error"
  // id="NAME-error"> at the end of the field, named by the input's aria-describedby, with
  // aria-invalid; role=alert so it is spoken when it appears. An error the server wrote comes
  // back as it was once the files are fixed.
  function markFiles(input, text) {
    var id = input.name + "-error";
    var out = document.getElementById(id);
    var ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    if (text) {
      if (!out) {
        out = document.createElement("p");
        out.className = "error";
        out.id = id;
        out.setAttribute("data-client", "");
        (input.closest(".field") || input.parentNode).appendChild(out);
      } else if (!out.hasAttribute("data-client") && !out.hasAttribute("data-server-text")) {
        out.setAttribute("data-server-text", out.textContent);
      }
      out.setAttribute("role", "alert");
      out.textContent = text;
      if (ids.indexOf(id) < 0) { input.setAttribute("aria-describedby", ids.concat(id).join(" ")); }
      input.setAttribute("aria-invalid", "true");
      return;
    }
    if (!out) { return; }
    if (out.hasAttribute("data-client")) {
      out.remove();
      ids = ids.filter(function (x) { return x !== id; });
      if (ids.length) { input.setAttribute("aria-describedby", ids.join(" ")); }
      else { input.removeAttribute("aria-describedby"); }
      input.removeAttribute("aria-invalid");
    } else if (out.hasAttribute("data-server-text")) {
      out.textContent = out.getAttribute("data-server-text");
      out.removeAttribute("data-server-text");
      out.removeAttribute("role");
    }
  }

  document.querySelectorAll("form input[type=file]").forEach(function (input) {
    input.addEventListener("change", function () { markFiles(input, fileErrors(input)); });
    input.form.addEventListener("submit", function (event) {
      var text = fileErrors(input);
      markFiles(input, text);
      if (text) {
        event.preventDefault();  // nothing is sent; what was typed stays as it is
        input.focus();
      }
    });
  });

  // Upload progress. A form with a [data-upload] box and chosen files is sent by
  // XMLHttpRequest, whose upload events a plain post lacks; the server's answer then becomes
  // the page, as the plain post would have made it: a redirect is followed to its final
  // address, any other answer (confirmation, the form with its errors, 413, 429) is written
  // in place of this document. Without files, or without JavaScript, the form posts as usual.
  function hasFiles(form) {
    return Array.prototype.some.call(form.querySelectorAll("input[type=file]"), function (input) {
      return input.files && input.files.length > 0;
    });
  }

  function noHash(url) { return url.split("#")[0]; }

  document.querySelectorAll("form [data-upload]").forEach(function (box) {
    var form = box.closest("form");
    var bar = box.querySelector("progress");
    var status = box.querySelector("[role=status]");
    var button = form.querySelector("button[type=submit]");
    var spoken = 0;

    // The bar moves with every event; the spoken text at most twice a second, so a screen
    // reader is not flooded with numbers.
    function report(percent) {
      bar.value = percent;
      var now = Date.now();
      if (percent < 100 && now - spoken < 500) { return; }
      spoken = now;
      status.textContent = percent < 100 ? "Uploading " + percent + "%"
        : "Uploaded 100%. Checking your files\u2026";
    }

    function failed(text) {
      box.classList.add("failed");
      status.textContent = text;
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }

    function answered(xhr) {
      var url = xhr.responseURL || form.action;
      if (noHash(url) !== noHash(form.action)) {  // redirected: go where the post would go
        window.location.assign(url + (form.getAttribute("data-fragment") || ""));
        return;
      }
      if (!xhr.responseText) {
        failed("The server gave no answer (status " + xhr.status + "). Please try again.");
        return;
      }
      document.open();
      document.write(xhr.responseText);
      document.close();
    }

    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented || !hasFiles(form) || !window.FormData) { return; }
      event.preventDefault();
      var data = new FormData(form);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { report(Math.floor(e.loaded * 100 / e.total)); }
      });
      xhr.upload.addEventListener("load", function () { report(100); });
      xhr.addEventListener("load", function () { answered(xhr); });
      xhr.addEventListener("error", function () {
        failed("The upload did not go through: the connection was lost. Files may be " +
               "10 MB each at most; please check them and try again.");
      });
      xhr.addEventListener("abort", function () { failed("The upload was stopped."); });
      box.classList.remove("failed");
      box.hidden = false;
      spoken = 0;
      report(0);
      button.disabled = true;
      form.setAttribute("aria-busy", "true");
      xhr.send(data);
    });
  });

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
