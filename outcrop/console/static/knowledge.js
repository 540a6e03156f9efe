// Knowledge bases: the test panel (Retrieve, RetrieveAndGenerate with citations) and ingestion jobs kept fresh.
"use strict";

(() => {
  const el = Outcrop.element;
  const form = document.getElementById("kb-test");
  const output = document.getElementById("kb-output");
  const status = document.getElementById("kb-status");

  function mode() { return form.querySelector('input[name="mode"]:checked').value; }

  function score(value) { return typeof value === "number" ? value.toFixed(3) : "–"; }

  function showResults(body) {
    const list = el("ol", { class: "results", "aria-label": "Retrieved chunks" });
    for (const r of body.results) {
      list.append(el("li", { class: "result" },
        el("div", { class: "result-head" },
          el("span", { class: "score", text: `score ${score(r.score)}` }),
          el("span", { class: "where", text: r.location })),
        el("p", { class: "chunk", text: r.text })));
    }
    output.replaceChildren(el("h3", { text: `${body.results.length} result${body.results.length === 1 ? "" : "s"}` }));
    if (body.guardrail === "INTERVENED") output.append(el("p", { class: "notice", text: "A guardrail intervened." }));
    if (body.results.length) output.append(list);
    else output.append(el("p", { class: "muted", text: "Nothing found." }));
  }

  function showAnswer(body) {
    const answer = el("p", { class: "answer" });
    for (const segment of body.segments) {
      if (!segment.refs.length) { answer.append(segment.text); continue; }
      const mark = el("mark", { class: "cited" }, segment.text);
      answer.append(mark);
      for (const n of segment.refs) {
        answer.append(el("sup", {}, el("a", { href: `#source-${n}`, class: "ref", "aria-label": `source ${n}`, text: `[${n}]` })));
      }
    }
    const sources = el("ol", { class: "results sources", "aria-label": "Cited chunks" });
    for (const s of body.sources) {
      sources.append(el("li", { id: `source-${s.number}`, class: "result", tabindex: "-1" },
        el("div", { class: "result-head" },
          el("span", { class: "score", text: `[${s.number}]` }),
          el("span", { class: "where", text: s.location })),
        el("p", { class: "chunk", text: s.text })));
    }
    output.replaceChildren(el("h3", { text: "Answer" }), answer);
    if (body.guardrail === "INTERVENED") output.append(el("p", { class: "notice", text: "A guardrail intervened." }));
    output.append(el("h3", { text: body.sources.length ? "Sources" : "No sources cited" }));
    if (body.sources.length) output.append(sources);
  }

  if (form) {
    const modelField = document.getElementById("kb-model-field");
    form.addEventListener("change", () => { modelField.hidden = mode() !== "generate"; });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form).entries());
      const button = document.getElementById("kb-run");
      const which = mode();
      button.disabled = true;
      status.textContent = which === "generate" ? "Generating…" : "Searching…";
      try {
        const body = await Outcrop.post(`/console/knowledge-bases/${form.dataset.kb}/${which}`, data);
        if (which === "generate") showAnswer(body); else showResults(body);
        status.textContent = "";
      } catch (error) {
        output.replaceChildren(el("p", { class: "notice error", role: "alert", text: error.message }));
        status.textContent = "";
      } finally {
        button.disabled = false;
      }
    });
  }

  // While an ingestion job runs, its status and statistics are refreshed; a new job or a finished one reloads.
  const sources = document.getElementById("sources");
  if (sources && sources.dataset.running) {
    const finished = ["COMPLETE", "FAILED", "STOPPED"];
    const tick = async () => {
      try {
        const { jobs } = await Outcrop.get(`/console/knowledge-bases/${sources.dataset.kb}/ingestion-jobs`);
        let reload = false;
        for (const job of jobs) {
          const row = sources.querySelector(`tr[data-job="${job.id}"]`);
          if (!row) { reload = true; continue; }
          const badge = row.querySelector('[data-field="status"]');
          if (badge.textContent !== job.status && finished.includes(job.status)) reload = true;
          badge.textContent = job.status;
          for (const [key, value] of Object.entries(job.statistics)) {
            const cell = row.querySelector(`[data-stat="${key}"]`);
            if (cell) cell.textContent = value;
          }
        }
        if (reload && !form?.contains(document.activeElement)) { location.reload(); return; }
      } catch (_) { /* the next tick tries again */ }
      setTimeout(tick, 1500);
    };
    setTimeout(tick, 1000);
  }
})();
