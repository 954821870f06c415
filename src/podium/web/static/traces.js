// Podium trace pages: live tail on the trace list, span details and "load more" on a trace page,
// payloads fetched on demand, and auto-submitting selects on the metrics page. Plain script, no libraries.
(function () {
  "use strict";

  var TAIL_EVERY_MS = 2000;

  // Fetch an HTML fragment; a failed request throws with the server's message (`{"error": {"message"}}`).
  function fetchText(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (r) {
      return r.text().then(function (body) {
        if (r.ok) return body;
        var message = "request failed (HTTP " + r.status + ")";
        try {
          message = JSON.parse(body).error.message || message;
        } catch (ignored) {
          /* not JSON: keep the generic message */
        }
        throw new Error(message);
      });
    });
  }

  // The <tr> elements of a fragment.
  function rowsFrom(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return Array.prototype.filter.call(t.content.children, function (el) {
      return el.tagName === "TR";
    });
  }

  function errorBox(message) {
    var p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    return p;
  }

  function clock() {
    return new Date().toLocaleTimeString();
  }

  // Leave empty fields out of a GET form's query string.
  function compactForm(form) {
    if (!form) return;
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if ((el.tagName === "INPUT" || el.tagName === "SELECT") && el.name && el.value === "") el.disabled = true;
      });
    });
  }

  // --- the trace list: live tail ---------------------------------------------------------------------

  // Put fetched rows (newest first) into the table: new traces in start-time order, known ones replaced.
  function mergeRows(tbody, rows) {
    var added = 0;
    rows.forEach(function (row) {
      var id = row.dataset.traceId;
      var known = tbody.querySelector('tr[data-trace-id="' + CSS.escape(id) + '"]');
      if (known) {
        if (known.outerHTML !== row.outerHTML) {
          if (known.classList.contains("fresh")) row.classList.add("fresh");
          known.replaceWith(row);
        }
        return;
      }
      var at = parseFloat(row.dataset.startMs);
      var before = null;
      var existing = tbody.querySelectorAll("tr.trace-row");
      for (var i = 0; i < existing.length; i++) {
        var other = parseFloat(existing[i].dataset.startMs);
        if (other < at || (other === at && existing[i].dataset.traceId < id)) {
          before = existing[i];
          break;
        }
      }
      if (before === null && tbody.dataset.more) return; // older than this page's last row: it belongs to a later page
      row.classList.add("fresh");
      tbody.insertBefore(row, before);
      added += 1;
    });
    return added;
  }

  function setupTail() {
    var box = document.getElementById("live-tail");
    var tbody = document.getElementById("trace-rows");
    if (!box || !tbody) return;
    var status = document.getElementById("tail-status");
    var timer = null;
    var busy = false;

    function poll() {
      if (busy || document.hidden) return;
      busy = true;
      var query = new URLSearchParams(box.dataset.query || "");
      var newest = tbody.querySelector("tr.trace-row");
      if (newest) query.set("after", newest.dataset.start);
      fetchText("/traces/tail?" + query.toString())
        .then(function (html) {
          var added = mergeRows(tbody, rowsFrom(html));
          if (added) {
            var none = document.getElementById("no-traces");
            if (none) none.remove();
          }
          status.classList.remove("err");
          status.textContent = (added ? added + " new, " : "") + "checked at " + clock();
        })
        .catch(function (e) {
          status.classList.add("err");
          status.textContent = e.message;
        })
        .finally(function () {
          busy = false;
        });
    }

    function start() {
      poll();
      timer = window.setInterval(poll, TAIL_EVERY_MS);
    }

    function stop() {
      window.clearInterval(timer);
      timer = null;
      status.textContent = "";
    }

    box.addEventListener("change", function () {
      var url = new URL(window.location.href);
      if (box.checked) {
        start();
        url.searchParams.set("tail", "1");
      } else {
        stop();
        url.searchParams.delete("tail");
      }
      history.replaceState(null, "", url);
    });
    if (new URL(window.location.href).searchParams.get("tail") === "1" && !box.disabled) {
      box.checked = true;
      start();
    }
  }

  // --- one trace: span details on click, more rows on demand -----------------------------------------

  function setupTrace() {
    var root = document.getElementById("trace");
    if (!root) return;
    var traceId = root.dataset.traceId;
    var base = "/traces/" + encodeURIComponent(traceId);
    var total = parseInt(root.dataset.total, 10);
    var pageSize = parseInt(root.dataset.more, 10);
    var tbody = document.getElementById("span-rows");
    var detail = document.getElementById("span-detail");
    var selected = null;
    var asked = 0;

    function show(spanId, row) {
      if (selected) selected.classList.remove("selected");
      selected = row || null;
      if (row) row.classList.add("selected");
      var mine = ++asked;
      detail.innerHTML = '<p class="muted">Loading…</p>';
      fetchText(base + "/spans/" + encodeURIComponent(spanId))
        .then(function (html) {
          if (mine === asked) detail.innerHTML = html;
        })
        .catch(function (e) {
          if (mine !== asked) return;
          detail.innerHTML = "";
          detail.appendChild(errorBox(e.message));
        });
      var url = new URL(window.location.href);
      url.searchParams.set("span", spanId);
      history.replaceState(null, "", url);
    }

    tbody.addEventListener("click", function (e) {
      var row = e.target.closest("tr.span-row");
      if (row) show(row.dataset.spanId, row);
    });
    tbody.addEventListener("keydown", function (e) {
      var row = e.target.closest("tr.span-row");
      if (!row) return;
      var next = null;
      if (e.key === "Enter" || e.key === " ") next = row;
      else if (e.key === "ArrowDown") next = row.nextElementSibling;
      else if (e.key === "ArrowUp") next = row.previousElementSibling;
      if (!next) return;
      e.preventDefault();
      next.focus();
      show(next.dataset.spanId, next);
    });

    var more = document.getElementById("load-more-spans");
    var pager = document.getElementById("span-pager");
    var count = document.getElementById("span-count");

    function updatePager() {
      var shown = tbody.querySelectorAll("tr.span-row").length;
      count.textContent = shown + " of " + total + " spans shown";
      more.textContent = "Load " + Math.min(pageSize, total - shown) + " more";
      pager.hidden = shown >= total;
      return shown;
    }

    if (more) {
      more.addEventListener("click", function () {
        var shown = tbody.querySelectorAll("tr.span-row").length;
        more.disabled = true;
        fetchText(base + "/rows?offset=" + shown + "&limit=" + pageSize)
          .then(function (html) {
            rowsFrom(html).forEach(function (row) {
              tbody.appendChild(row);
            });
            updatePager();
          })
          .catch(function (e) {
            pager.appendChild(errorBox(e.message));
          })
          .finally(function () {
            more.disabled = false;
          });
      });
    }

    var wanted = new URL(window.location.href).searchParams.get("span");
    if (wanted) show(wanted, tbody.querySelector('tr[data-span-id="' + CSS.escape(wanted) + '"]'));
  }

  // --- payloads kept in the artifact store, fetched when asked for -----------------------------------

  function setupPayloads() {
    document.addEventListener("click", function (e) {
      var button = e.target.closest("button.load-payload");
      if (!button) return;
      var box = button.closest(".payload-body");
      button.disabled = true;
      button.textContent = "Loading…";
      fetchText(button.dataset.url)
        .then(function (html) {
          box.outerHTML = html;
        })
        .catch(function (err) {
          button.disabled = false;
          button.textContent = "Try again";
          box.appendChild(errorBox(err.message));
        });
    });
  }

  // --- metrics: a new range or bucket shows at once ----------------------------------------------------

  function setupMetrics() {
    var form = document.getElementById("metrics-filters");
    if (!form) return;
    compactForm(form);
    form.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.name === "range" && select.value === "custom") {
          form.elements.from.focus();
          return;
        }
        if (form.requestSubmit) form.requestSubmit();
        else form.submit();
      });
    });
    ["from", "to"].forEach(function (name) {
      form.elements[name].addEventListener("input", function () {
        form.elements.range.value = "custom";
      });
    });
  }

  function start() {
    compactForm(document.getElementById("trace-filters"));
    setupTail();
    setupTrace();
    setupPayloads();
    setupMetrics();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
