// Guardrails page: add and remove rows of the editor (topics, words, PII entities, regexes), and the test panel,
// which runs ApplyGuardrail through the console and shows the action, the output and each assessment.
"use strict";

(() => {
  const E = Outcrop.element;

  // --- the editor's lists: each "Add" clones its <template>, numbering the fields with the list's next index
  for (const button of document.querySelectorAll("[data-add]")) {
    const kind = button.dataset.add;
    const list = document.querySelector(`[data-rows="${kind}"]`);
    const template = document.querySelector(`template[data-template="${kind}"]`);
    if (!list || !template) continue;
    button.addEventListener("click", () => {
      const n = Number(list.dataset.next || "0");
      list.dataset.next = String(n + 1);
      const html = template.innerHTML.replaceAll("__N__", String(n));
      const holder = document.createElement("div");
      holder.innerHTML = html;  // the server's own template: escaped there, nothing typed by anyone goes in
      const row = holder.firstElementChild;
      list.append(row);
      const first = row.querySelector("input:not([type=checkbox]), select, textarea");
      if (first) first.focus();
    });
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove]");
    if (!button) return;
    const row = button.closest("[data-row]");
    const list = row && row.parentElement;
    const add = list && list.parentElement.querySelector(`[data-add="${list.dataset.rows}"]`);
    if (row) row.remove();
    if (add) add.focus();
  });

  // --- the test panel
  const form = document.getElementById("test-form");
  if (!form) return;
  const result = document.getElementById("test-result");
  const status = document.getElementById("test-status");
  const run = document.getElementById("test-run");

  function findingsTable(findings) {
    const head = E("tr", {}, ...["Found by", "Match", "Details", "Action"].map(
      (t) => E("th", { scope: "col", text: t })));
    const body = E("tbody");
    for (const f of findings) {
      const shown = f.action === "NONE" ? (f.detected ? "detected" : "none") : f.action;
      const kind = f.action === "BLOCKED" ? "bad" : f.action === "NONE" ? "" : "warn";
      body.append(E("tr", { "data-policy": f.policy },
        E("td", { "data-label": "Found by" }, E("span", { class: "f-policy", text: f.label }), " ",
          E("span", { class: "f-item", text: f.item })),
        E("td", { "data-label": "Match", class: "match", text: f.match == null ? "" : String(f.match) }),
        E("td", { "data-label": "Details", class: "detail", text: f.detail }),
        E("td", { "data-label": "Action" }, E("span", { class: `badge ${kind}`, text: shown }))));
    }
    return E("div", { class: "table-wrap" },
      E("table", { class: "cards findings", id: "test-findings" },
        E("caption", { class: "sr-only", text: "Assessments" }), E("thead", {}, head), body));
  }

  function show(data) {
    const answer = data.answer;
    const intervened = answer.action === "GUARDRAIL_INTERVENED";
    const parts = [E("p", { class: "verdict" },
      E("span", { class: `badge ${intervened ? "bad" : "ok"}`, id: "test-action", text: answer.action }),
      " ", E("span", { text: answer.actionReason || (intervened ? "" : "Nothing to stop.") }))];
    if (answer.outputs.length) {
      parts.push(E("h3", { text: "Output" }));
      for (const o of answer.outputs) parts.push(E("pre", { class: "output", text: o.text }));
    }
    parts.push(E("h3", { text: "Assessments" }));
    parts.push(data.findings.length ? findingsTable(data.findings)
      : E("p", { class: "muted", text: "No policy found anything." }));
    const usage = answer.usage || {};
    const units = Object.entries(usage).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(", ");
    const metrics = (answer.assessments[0] || {}).invocationMetrics || {};
    parts.push(E("p", { class: "muted small", text:
      `${metrics.guardrailProcessingLatency ?? "?"} ms` + (units ? ` · ${units}` : "") }));
    const raw = E("details", {}, E("summary", { text: "ApplyGuardrail's answer (JSON)" }),
      E("pre", { class: "output", text: JSON.stringify(answer, null, 2) }));
    parts.push(raw);
    result.replaceChildren(...parts);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      version: form.elements.version.value,
      source: form.elements.source.value,
      text: form.elements.text.value,
      groundingSource: form.elements.groundingSource.value,
      query: form.elements.query.value,
      full: form.elements.full.checked,
    };
    run.disabled = true;
    result.replaceChildren();
    status.textContent = "Checking…";
    try {
      show(await Outcrop.post(form.dataset.url, body));
      status.textContent = "";
    } catch (error) {
      result.replaceChildren(E("p", { class: "notice error", role: "alert", text: error.message }));
      status.textContent = "";
    } finally {
      run.disabled = false;
    }
  });
  form.elements.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
})();
