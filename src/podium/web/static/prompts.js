// Podium prompt playground: edit a template (text or chat messages), fill the variables it uses, run up to
// four version × model combinations side by side through the gateway, and save the draft as a new version.
// Plain script, no libraries. The page's JSON calls carry the session cookie and the CSRF token header.
(function () {
  "use strict";

  var root = document.getElementById("playground");
  if (!root) return;
  var data = JSON.parse(document.getElementById("playground-data").textContent);
  var csrf = root.dataset.csrf;
  var ROLES = ["system", "developer", "user", "assistant", "tool"];

  var draft = {
    kind: data.draft.kind,
    template: data.draft.template || "",
    messages: (data.draft.messages || []).map(function (m) {
      return { role: m.role, content: m.content };
    }),
    base: data.base,
  };
  var values = {}; // variable name -> what the user typed (kept across re-renders)
  var declared = {}; // variable name -> {type, default, description}
  var combos = [];

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "className") node.className = attrs[k];
      else if (k.indexOf("-") > 0) node.setAttribute(k, attrs[k]);
      else node[k] = attrs[k];
    });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function promptName() {
    return $("prompt-name").value.trim();
  }

  // POST JSON; resolves to {ok, status, body} with the server's JSON (or an error shaped like it).
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: JSON.stringify(body),
    }).then(
      function (r) {
        return r.text().then(function (text) {
          var parsed;
          try {
            parsed = JSON.parse(text);
          } catch (ignored) {
            parsed = { error: { message: "request failed (HTTP " + r.status + ")" } };
          }
          return { ok: r.ok, status: r.status, body: parsed };
        });
      },
      function (err) {
        return { ok: false, status: 0, body: { error: { message: "the server did not answer: " + err.message } } };
      }
    );
  }

  function errorOf(res) {
    var e = (res.body && res.body.error) || {};
    return { message: e.message || "request failed (HTTP " + res.status + ")", details: e.details || {} };
  }

  function draftBody() {
    return {
      kind: draft.kind,
      template: draft.kind === "text" ? draft.template : null,
      messages: draft.kind === "chat" ? draft.messages : null,
      base: draft.base,
    };
  }

  // --- the editor ------------------------------------------------------------------------------------

  function renderMessages() {
    var box = $("messages");
    box.textContent = "";
    draft.messages.forEach(function (m, i) {
      var row = el("div", { className: "message-row", "data-index": String(i) });
      var role = el("select", { className: "message-role", "aria-label": "Role of message " + (i + 1) });
      ROLES.forEach(function (r) {
        role.appendChild(el("option", { value: r, selected: r === m.role }, r));
      });
      role.addEventListener("change", function () {
        m.role = role.value;
        edited();
      });
      var text = el("textarea", { className: "message-content", rows: 3, spellcheck: false });
      text.value = m.content;
      text.setAttribute("aria-label", "Content of message " + (i + 1));
      text.addEventListener("input", function () {
        m.content = text.value;
        edited();
      });
      var remove = el("button", { type: "button", className: "danger remove-message", title: "Remove this message" }, "✕");
      remove.addEventListener("click", function () {
        draft.messages.splice(i, 1);
        renderMessages();
        edited();
      });
      row.appendChild(role);
      row.appendChild(text);
      row.appendChild(remove);
      box.appendChild(row);
    });
  }

  function renderEditor() {
    Array.prototype.forEach.call(document.querySelectorAll("input[name=kind]"), function (r) {
      r.checked = r.value === draft.kind;
    });
    $("text-editor").hidden = draft.kind !== "text";
    $("chat-editor").hidden = draft.kind !== "chat";
    $("template").value = draft.template;
    renderMessages();
    var note = $("base-note");
    if (note) note.textContent = draft.base ? "Draft started from v" + draft.base : "";
  }

  Array.prototype.forEach.call(document.querySelectorAll("input[name=kind]"), function (r) {
    r.addEventListener("change", function () {
      if (!r.checked || r.value === draft.kind) return;
      // carry the text across: text -> one user message; chat -> the messages joined
      if (r.value === "chat") {
        draft.messages = draft.template ? [{ role: "user", content: draft.template }] : [{ role: "user", content: "" }];
      } else {
        draft.template = draft.messages
          .map(function (m) {
            return m.content;
          })
          .join("\n\n");
      }
      draft.kind = r.value;
      renderEditor();
      edited();
    });
  });
  $("template").addEventListener("input", function () {
    draft.template = $("template").value;
    edited();
  });
  $("add-message").addEventListener("click", function () {
    var last = draft.messages.length ? draft.messages[draft.messages.length - 1].role : "system";
    draft.messages.push({ role: last === "user" ? "assistant" : "user", content: "" });
    renderMessages();
    edited();
  });

  // --- variables and template errors -----------------------------------------------------------------

  var checkTimer = null;
  var checkSeq = 0;

  function edited() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(checkTemplates, 250);
  }

  function savedSources() {
    return combos
      .filter(function (c) {
        return c.source !== "draft";
      })
      .map(function (c) {
        return parseInt(c.source, 10);
      });
  }

  function checkTemplates() {
    var seq = ++checkSeq;
    var name = data.isNew ? "" : promptName();
    return post("/prompts/-/variables", { name: name, draft: draftBody(), versions: savedSources() }).then(function (res) {
      if (seq !== checkSeq) return;
      if (!res.ok) {
        showTemplateErrors([{ message: errorOf(res).message }]);
        return;
      }
      showTemplateErrors(res.body.errors);
      renderVariables(res.body.variables);
    });
  }

  function showTemplateErrors(errors) {
    var box = $("template-errors");
    box.textContent = "";
    Array.prototype.forEach.call(document.querySelectorAll(".invalid"), function (n) {
      n.classList.remove("invalid");
    });
    errors.forEach(function (e) {
      var p = el("p", { className: "error template-error", role: "alert" }, e.message);
      if (e.line) p.setAttribute("data-line", String(e.line));
      if (e.column) p.setAttribute("data-column", String(e.column));
      if (e.where) p.setAttribute("data-where", e.where);
      box.appendChild(p);
      var m = /^messages\[(\d+)\]/.exec(e.where || "");
      var field = m ? document.querySelector(".message-row[data-index='" + m[1] + "'] textarea") : e.where === "template" ? $("template") : null;
      if (field) field.classList.add("invalid");
    });
  }

  function renderVariables(list) {
    var box = $("variables");
    box.textContent = "";
    declared = {};
    if (!list.length) {
      box.appendChild(el("span", { className: "muted" }, "The template uses no variables."));
      return;
    }
    list.forEach(function (v) {
      declared[v.name] = v;
      var label = el("label", { className: "variable", "data-var-label": v.name });
      var head = el("span", {}, v.name + " ");
      head.appendChild(el("span", { className: "small muted" }, v.type + (v.used_by ? " · " + v.used_by.join(", ") : "")));
      label.appendChild(head);
      var multi = v.type === "list" || v.type === "object";
      var input = el(multi ? "textarea" : "input", { className: "var-input", "data-var": v.name });
      if (multi) input.rows = 2;
      if (v["default"] !== undefined) input.placeholder = "default: " + JSON.stringify(v["default"]);
      else if (multi) input.placeholder = v.type === "list" ? '["a", "b"]' : '{"key": "value"}';
      input.value = values[v.name] !== undefined ? values[v.name] : "";
      input.addEventListener("input", function () {
        values[v.name] = input.value;
        input.classList.remove("missing");
      });
      label.appendChild(input);
      box.appendChild(label);
    });
  }

  function variableValues() {
    var out = {};
    Object.keys(declared).forEach(function (name) {
      var raw = values[name];
      if (raw === undefined || raw === "") return; // absent: the default applies, or the run names it missing
      var type = declared[name].type;
      if (type === "list" || type === "object") {
        try {
          out[name] = JSON.parse(raw);
          return;
        } catch (ignored) {
          /* sent as text: the server says what type it wanted */
        }
      }
      out[name] = raw;
    });
    return out;
  }

  // --- combinations and runs -------------------------------------------------------------------------

  function sourceLabel(v) {
    var labels = (v.labels || []).join(", ");
    return "v" + v.version + (labels ? " (" + labels + ")" : "");
  }

  function defaultModel(source) {
    var params = source === "draft" ? data.draft.model : (findVersion(source) || {}).model;
    var wanted = params && params.name;
    if (wanted && data.models.indexOf(wanted) >= 0) return wanted;
    return data.models[0] || "";
  }

  function findVersion(source) {
    var n = parseInt(source, 10);
    for (var i = 0; i < data.versions.length; i++) if (data.versions[i].version === n) return data.versions[i];
    return null;
  }

  function renderCombos() {
    var box = $("combos");
    box.textContent = "";
    combos.forEach(function (c, i) {
      var row = el("div", { className: "combo row", "data-index": String(i) });
      var src = el("select", { className: "combo-source", "aria-label": "Version of combination " + (i + 1) });
      src.appendChild(el("option", { value: "draft", selected: c.source === "draft" }, "Edited draft"));
      data.versions.forEach(function (v) {
        src.appendChild(el("option", { value: String(v.version), selected: c.source === String(v.version) }, sourceLabel(v)));
      });
      src.addEventListener("change", function () {
        c.source = src.value;
        edited();
      });
      var model = el("select", { className: "combo-model", "aria-label": "Model of combination " + (i + 1) });
      if (!data.models.length) model.appendChild(el("option", { value: "" }, "no chat models or routes"));
      data.models.forEach(function (m) {
        model.appendChild(el("option", { value: m, selected: c.model === m }, m));
      });
      model.addEventListener("change", function () {
        c.model = model.value;
      });
      row.appendChild(el("span", { className: "combo-number" }, String(i + 1)));
      row.appendChild(src);
      row.appendChild(el("span", { className: "muted" }, "×"));
      row.appendChild(model);
      if (combos.length > 1) {
        var remove = el("button", { type: "button", className: "link remove-combo" }, "remove");
        remove.addEventListener("click", function () {
          combos.splice(i, 1);
          renderCombos();
          edited();
        });
        row.appendChild(remove);
      }
      box.appendChild(row);
    });
    $("add-combo").disabled = combos.length >= data.maxCombos;
  }

  $("add-combo").addEventListener("click", function () {
    if (combos.length >= data.maxCombos) return;
    var prev = combos[combos.length - 1];
    var source = prev ? prev.source : "draft";
    var model = prev ? nextModel(prev.model) : defaultModel(source);
    combos.push({ source: source, model: model });
    renderCombos();
  });

  function nextModel(current) {
    var i = data.models.indexOf(current);
    return data.models.length ? data.models[(i + 1) % data.models.length] : "";
  }

  function fact(name, label, value) {
    var d = el("div", { className: "fact", "data-fact": name });
    d.appendChild(el("span", { className: "muted small" }, label));
    d.appendChild(el("b", {}, value));
    return d;
  }

  function fmtMs(ms) {
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s";
  }

  function showResult(col, res) {
    col.classList.remove("pending");
    col.querySelector(".result-body").textContent = "";
    var body = col.querySelector(".result-body");
    if (!res.ok) {
      var e = errorOf(res);
      col.classList.add("failed");
      body.appendChild(el("p", { className: "error result-error", role: "alert" }, e.message));
      if (e.details && e.details.missing) {
        e.details.missing.forEach(function (name) {
          var input = document.querySelector("[data-var='" + name + "']");
          if (input) input.classList.add("missing");
        });
      }
      if (e.details && e.details.line) showTemplateErrors([{ message: e.message, line: e.details.line, column: e.details.column, where: e.details.where }]);
      return;
    }
    var r = res.body;
    if (!r.ok) {
      col.classList.add("failed");
      body.appendChild(el("p", { className: "error result-error", role: "alert" }, "HTTP " + r.status + ": " + r.error));
    } else {
      body.appendChild(el("div", { className: "output" }, r.output));
    }
    var facts = el("div", { className: "facts" });
    facts.appendChild(fact("latency", "Latency", fmtMs(r.latency_ms)));
    facts.appendChild(fact("tokens", "Tokens", r.prompt_tokens + " + " + r.completion_tokens));
    facts.appendChild(fact("cost", "Cost", r.cost));
    body.appendChild(facts);
    col.setAttribute("data-latency-ms", String(r.latency_ms));
    col.setAttribute("data-cost-micros", String(r.cost_micros));
    var link = el("a", { className: "trace-link small", href: "/traces/" + r.trace_id }, "trace " + r.trace_id);
    body.appendChild(link);
  }

  $("run").addEventListener("click", function () {
    var results = $("results");
    results.textContent = "";
    results.style.setProperty("--columns", String(combos.length));
    var vars = variableValues();
    var name = promptName();
    $("run-status").textContent = "Running " + combos.length + "…";
    var pending = combos.map(function (c, i) {
      var title = (c.source === "draft" ? "Draft" : sourceLabel(findVersion(c.source) || { version: c.source })) + " × " + c.model;
      var col = el("div", { className: "result card pending", "data-index": String(i) });
      col.appendChild(el("div", { className: "result-title" }, title));
      col.appendChild(el("div", { className: "result-body muted" }, "running…"));
      results.appendChild(col);
      var body = { name: data.isNew ? "" : name, source: c.source, model: c.model, variables: vars };
      if (c.source === "draft") body.draft = draftBody();
      return post("/api/playground/run", body).then(function (res) {
        showResult(col, res);
      });
    });
    Promise.all(pending).then(function () {
      $("run-status").textContent = "Done.";
    });
  });

  // --- saving ----------------------------------------------------------------------------------------

  var saveButton = $("save");
  if (saveButton) {
    saveButton.addEventListener("click", function () {
      var status = $("save-status");
      status.textContent = "";
      var name = promptName();
      post("/prompts/-/save", { name: name, draft: draftBody(), message: $("commit-message").value }).then(function (res) {
        if (!res.ok) {
          status.appendChild(el("p", { className: "error", role: "alert" }, errorOf(res).message));
          return;
        }
        var v = res.body.version;
        var p = el("p", { className: "ok-box saved", role: "status" });
        p.appendChild(document.createTextNode(res.body.created ? "Saved as " : "Unchanged: the same as "));
        p.appendChild(el("a", { href: "/prompts/" + res.body.name + "?v=" + v.version }, res.body.name + " v" + v.version));
        status.appendChild(p);
        if (!findVersion(String(v.version))) data.versions.unshift(v);
        draft.base = v.version;
        if (data.isNew) {
          data.isNew = false;
          $("prompt-name").readOnly = true;
        }
        renderEditor();
        renderCombos();
      });
    });
  }

  // --- start -----------------------------------------------------------------------------------------

  combos.push({ source: "draft", model: defaultModel("draft") });
  renderEditor();
  renderCombos();
  checkTemplates();
})();
