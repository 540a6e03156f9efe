// Playground: stream answers as they are written, one or two models side by side, and "Show code".
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  if (!$("composer")) return; // no chat model for this key
  const data = Outcrop.data("playground-data");
  const el = Outcrop.element;

  const panes = [
    { select: $("model-a"), root: $("pane-a"), title: $("pane-a-title"), history: [] },
    { select: $("model-b"), root: $("pane-b"), title: $("pane-b-title"), history: [] },
  ];
  let running = null; // the AbortController of the turn in flight

  const active = () => (($("compare").checked) ? panes : panes.slice(0, 1));
  const log = (pane) => pane.root.querySelector(".log");

  function number(id) {
    const raw = $(id).value.trim();
    return raw === "" ? null : Number(raw);
  }

  function requestFor(pane, messages) {
    const body = { model: pane.select.value, messages, system: $("system").value };
    const temperature = number("temperature"), topP = number("top-p"), maxTokens = number("max-tokens");
    if (temperature !== null) body.temperature = temperature;
    if (topP !== null) body.topP = topP;
    if (maxTokens !== null) body.maxTokens = maxTokens;
    if ($("guardrail").value) body.guardrail = { id: $("guardrail").value, version: $("guardrail-version").value };
    return body;
  }

  function turn(role, text) {
    const node = el("div", { class: `turn ${role}` },
      el("span", { class: "role", text: role === "user" ? "You" : "Model" }),
      el("div", { class: "text", text }));
    return node;
  }

  function describeStop(event) {
    const u = event.usage;
    const parts = [`${u.inputTokens} in`, `${u.outputTokens} out`];
    if (event.ttftMs !== null) parts.push(`TTFT ${event.ttftMs} ms`);
    if (event.tokensPerSecond !== null) parts.push(`${event.tokensPerSecond} tokens/s`);
    parts.push(`${event.latencyMs} ms in all`);
    if (event.stopReason !== "end_turn") parts.push(`stop: ${event.stopReason}`);
    const stats = el("div", { class: "stats", text: parts.join(" · ") });
    stats.dataset.inputTokens = u.inputTokens;
    stats.dataset.outputTokens = u.outputTokens;
    stats.dataset.ttftMs = event.ttftMs ?? "";
    stats.dataset.tokensPerSecond = event.tokensPerSecond ?? "";
    return stats;
  }

  function describeGuardrail(g) {
    const box = el("div", { class: "guard" });
    box.dataset.action = g.action;
    if (g.action !== "INTERVENED") {
      box.append(el("span", { class: "badge ok", text: "guardrail: no intervention" }));
      return box;
    }
    box.append(el("span", { class: "badge bad", text: "guardrail intervened" }));
    if (g.reason) box.append(" ", el("span", { text: g.reason }));
    const list = el("ul");
    for (const f of g.findings) {
      let line = `${f.where}: ${f.policy}${f.kind ? " › " + f.kind : ""} › ${f.item} (${f.action})`;
      if (f.match && f.match !== f.item) line += ` matched “${f.match}”`;
      if (f.reason) line += ` — ${f.reason}`;
      list.append(el("li", { text: line }));
    }
    box.append(list);
    return box;
  }

  async function ask(pane, signal) {
    const answer = turn("assistant", "");
    answer.dataset.state = "streaming";
    const text = answer.querySelector(".text");
    log(pane).append(answer);
    log(pane).setAttribute("aria-busy", "true");
    let written = "";
    try {
      await Outcrop.stream("/console/playground/chat", requestFor(pane, pane.history), (event) => {
        if (event.type === "text") {
          written += event.text;
          text.textContent = written;
        } else if (event.type === "tool") {
          written += `[tool call: ${event.name}] `;
          text.textContent = written;
        } else if (event.type === "stop") {
          answer.append(describeStop(event));
          if (event.guardrail) answer.append(describeGuardrail(event.guardrail));
          answer.dataset.state = "done";
        } else if (event.type === "error") {
          throw new Error(event.message);
        }
      }, { signal });
      pane.history.push({ role: "assistant", text: written });
    } catch (error) {
      answer.classList.add("error");
      answer.dataset.state = "error";
      text.textContent = written + (written ? "\n" : "") + (error.name === "AbortError" ? "(stopped)" : error.message);
      pane.history.pop(); // the unanswered question goes too, so the next turn starts clean
    } finally {
      log(pane).setAttribute("aria-busy", "false");
    }
  }

  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = $("prompt").value.trim();
    if (!prompt || running) return;
    running = new AbortController();
    $("send").disabled = true;
    $("stop").disabled = false;
    $("status").textContent = "Answering…";
    $("prompt").value = "";
    const turns = active().map((pane) => {
      pane.history.push({ role: "user", text: prompt });
      log(pane).append(turn("user", prompt));
      return ask(pane, running.signal);
    });
    await Promise.all(turns);
    running = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    $("status").textContent = "Done.";
    $("prompt").focus();
  });

  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => running && running.abort());

  $("clear").addEventListener("click", () => {
    for (const pane of panes) { pane.history = []; log(pane).replaceChildren(); }
    $("status").textContent = "";
  });

  for (const pane of panes) {
    pane.select.addEventListener("change", () => { pane.title.textContent = pane.select.value; });
  }
  $("compare").addEventListener("change", () => {
    const on = $("compare").checked;
    $("model-b-field").hidden = !on;
    panes[1].root.hidden = !on;
    panes[1].title.textContent = panes[1].select.value;
    $("panes").classList.toggle("compare", on);
  });

  $("guardrail").addEventListener("change", () => {
    const chosen = data.guardrails.find((g) => g.id === $("guardrail").value);
    const versions = $("guardrail-version");
    versions.replaceChildren(...(chosen ? chosen.versions : ["DRAFT"]).map((v) => el("option", { value: v, text: v })));
    versions.disabled = !chosen;
  });

  // "Show code": the first pane's conversation, with the message being written as its next turn.
  let snippets = {};
  function showTab(lang) {
    for (const tab of document.querySelectorAll('#code-dialog [role="tab"]')) {
      const selected = tab.dataset.lang === lang;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      if (selected) $("code-panel").setAttribute("aria-labelledby", tab.id);
    }
    $("code-text").textContent = snippets[lang] || "";
    $("code-dialog").dataset.lang = lang;
  }
  // With nothing being written, the request that got the last answer; with nothing at all, a first "Hello".
  $("show-code").addEventListener("click", async () => {
    const messages = panes[0].history.slice();
    const prompt = $("prompt").value.trim();
    if (prompt) messages.push({ role: "user", text: prompt });
    else if (messages.length && messages[messages.length - 1].role === "assistant") messages.pop();
    if (!messages.length) messages.push({ role: "user", text: "Hello" });
    try {
      snippets = await Outcrop.post("/console/playground/code", requestFor(panes[0], messages));
    } catch (error) {
      $("status").textContent = error.message;
      return;
    }
    showTab("boto3");
    $("code-dialog").showModal();
  });
  const tabs = Array.from(document.querySelectorAll('#code-dialog [role="tab"]'));
  for (const tab of tabs) {
    tab.addEventListener("click", () => showTab(tab.dataset.lang));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      showTab(next.dataset.lang);
      next.focus();
    });
  }
  $("code-close").addEventListener("click", () => $("code-dialog").close());
  $("code-copy").addEventListener("click", (event) => Outcrop.copy($("code-text").textContent, event.target));
})();
