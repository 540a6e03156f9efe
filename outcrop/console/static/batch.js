// Batch: submit a JSONL file (multipart, with the session's CSRF token) and keep running jobs' progress fresh.
"use strict";

(() => {
  const form = document.getElementById("batch-submit");
  const status = document.getElementById("batch-status");

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = document.getElementById("batch-send");
      button.disabled = true;
      status.textContent = "Uploading…";
      try {
        const response = await fetch("/console/batch/jobs", {
          method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": Outcrop.csrf() },
          body: new FormData(form),
        });
        let body = null;
        try { body = await response.json(); } catch (_) { /* not JSON */ }
        if (!response.ok) throw new Error((body && body.message) || `${response.status} ${response.statusText}`);
        location.assign(`/console/batch?submitted=${encodeURIComponent(body.id)}`);
      } catch (error) {
        status.textContent = "";
        const old = form.querySelector(".notice.error");
        if (old) old.remove();
        form.prepend(Outcrop.element("p", { class: "notice error", role: "alert", text: error.message }));
        button.disabled = false;
      }
    });
  }

  // While a job is active its status and counts are refreshed; when one ends the page reloads (downloads appear).
  const table = document.getElementById("batch-jobs");
  if (table && table.dataset.active) {
    const tick = async () => {
      try {
        const { jobs } = await Outcrop.get("/console/batch/jobs");
        let reload = false;
        for (const job of jobs) {
          const row = table.querySelector(`tr[data-job="${job.id}"]`);
          if (!row) continue;
          row.querySelector('[data-field="status"]').textContent = job.status;
          row.querySelector('[data-field="message"]').textContent = job.message;
          const bar = row.querySelector("progress");
          bar.max = Math.max(job.total, 1);
          bar.value = job.processed;
          row.querySelector('[data-field="counts"]').textContent =
            `${job.processed} of ${job.total} processed: ${job.succeeded} succeeded, ${job.failed} failed`;
          if (!job.active && row.querySelector('[data-field="status"]').classList.contains("warn")) reload = true;
        }
        if (reload && !(form && form.contains(document.activeElement))) { location.reload(); return; }
      } catch (_) { /* the next tick tries again */ }
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 800);
  }
})();
