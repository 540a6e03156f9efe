// Outcrop console: what every page's script shares. Plain JavaScript, no build step.
"use strict";

const Outcrop = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function failure(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.message) message = body.message;
    } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    return error;
  }

  // POST JSON with the session's CSRF token; the answer's JSON, or an Error with the server's message.
  async function post(url, body, options = {}) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", signal: options.signal,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  async function get(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  // POST JSON and read the answer as it streams: one JSON object a line (application/x-ndjson), each handed to
  // onEvent as soon as its line is complete.
  async function stream(url, body, onEvent, options = {}) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", signal: options.signal,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line) onEvent(JSON.parse(line));
      }
    }
    if (pending.trim()) onEvent(JSON.parse(pending));
  }

  // <script type="application/json" id="..."> blocks carry a page's data (no inline script runs: see the CSP).
  const data = (id) => JSON.parse(document.getElementById(id).textContent);

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function copy(text, button) {
    await navigator.clipboard.writeText(text);
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  return { csrf, post, get, stream, data, element, copy };
})();
