// Models page: refresh slots busy and queue lengths every 2 s while the page is in view (administrators).
"use strict";

(() => {
  async function refresh() {
    if (document.visibilityState !== "visible") return;
    let data;
    try { data = await Outcrop.get("/console/models/load"); } catch (_) { return; }
    for (const row of document.querySelectorAll("#models tr[data-model]")) {
      const entry = data.models[row.dataset.model];
      if (!entry) continue;
      const busy = row.querySelector('[data-field="busy"]');
      const queue = row.querySelector('[data-field="queue"]');
      if (busy) busy.textContent = entry.loaded ? `${entry.in_flight} / ${entry.slots}` : "–";
      if (queue) queue.textContent = entry.loaded ? `${entry.queued} / ${entry.max_queue}` : "–";
    }
  }
  setInterval(refresh, 2000);
})();
