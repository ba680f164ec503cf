// databuild dashboard: live updates from the service's Server-Sent Events, and a
// connection indicator that says when the service has gone away and comes back.
(() => {
  "use strict";
  const conn = document.getElementById("conn");
  const live = document.getElementById("live");
  const runId = live && live.dataset.run;
  const jobRunId = live && live.dataset.jobRun;
  let lastSeq = live ? Number(live.dataset.seq || 0) : 0;
  let source = null;
  let wasDown = false;

  const setConn = (ok) => {
    if (!conn) return;
    conn.className = "conn " + (ok ? "live" : "down");
    conn.textContent = ok ? "live" : "disconnected: reconnecting…";
    conn.dataset.state = ok ? "live" : "down";
  };

  // Replaces every [data-live] section with its fresh rendering from the server, at most
  // once a second however many events arrive (each rendering reads the event log).
  const REFRESH_MS = 1000;
  let refreshTimer = null;
  const refresh = () => {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        const res = await fetch(location.href, { headers: { accept: "text/html" } });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        for (const el of document.querySelectorAll("[data-live]")) {
          const fresh = doc.querySelector(`[data-live="${el.dataset.live}"]`);
          if (fresh) el.replaceWith(fresh);
        }
        indexNodes();
      } catch (_) { /* the stream's error handler reports the connection */ }
    }, REFRESH_MS);
  };

  // Task boxes of the run's job graph, by output ref.
  const nodesByRef = new Map();
  const indexNodes = () => {
    nodesByRef.clear();
    for (const g of document.querySelectorAll("#run-dag g.node")) {
      for (const r of JSON.parse(g.dataset.outputs || "[]")) nodesByRef.set(r, g);
    }
  };
  indexNodes();
  const setNodeStatus = (g, status) => {
    for (const c of [...g.classList]) if (c.startsWith("s-")) g.classList.remove(c);
    g.classList.add("s-" + status);
  };
  const JOB_CLASS = { JOB_SCHEDULED: "scheduled", JOB_RUNNING: "running", JOB_SUCCESS: "success", JOB_FAILED: "failed" };
  const badge = (status) => {
    const word = status.replace(/^(PARTITION_|JOB_|GRAPH_)/, "");
    const span = document.createElement("span");
    span.className = "badge s-" + word.toLowerCase();
    span.dataset.status = word;
    span.textContent = word;
    return span;
  };

  const onRunEvent = (msg) => {
    const seq = Number(msg.lastEventId || 0);
    if (seq && seq <= lastSeq) return; // already on the page (a reconnect replays the run)
    if (seq) lastSeq = seq;
    const ev = JSON.parse(msg.data);
    const run = ev.jobGraphRunEvent;
    if (run && run.jobEvent) {
      const j = run.jobEvent;
      if (jobRunId) {
        if (j.jobRunId === jobRunId) {
          const log = document.getElementById("log");
          if (log && j.logs && j.logs.logs) {
            log.append((log.textContent ? "\n" : "") + j.logs.logs.join("\n"));
            log.scrollTop = log.scrollHeight;
          }
          const st = document.getElementById("job-status");
          if (st && j.status) st.replaceChildren(badge(j.status));
        }
        return;
      }
      const cls = JOB_CLASS[j.status];
      if (cls) {
        for (const o of j.outputs || []) {
          const g = nodesByRef.get(o.str);
          if (g) setNodeStatus(g, cls);
        }
      }
      refresh();
    } else if (run && run.graphEvent) {
      const st = document.getElementById("run-status");
      if (st && run.graphEvent.status) st.replaceChildren(badge(run.graphEvent.status));
      if (!jobRunId) refresh();
    } else if (ev.partitionEvent && !jobRunId) {
      const p = ev.partitionEvent;
      const g = p.partitionRef && nodesByRef.get(p.partitionRef.str);
      if (g && p.status === "PARTITION_DELEGATED") setNodeStatus(g, "delegated");
      if (g && p.status === "PARTITION_FAILED" && !g.classList.contains("s-success")) setNodeStatus(g, "failed");
      if (p.status === "PARTITION_DELEGATED") refresh();
    }
  };

  // `url` is a function: a reopened stream starts after what the page already shows.
  const open = (url, handlers, onEnd) => {
    if (source) source.close();
    const s = new EventSource(url());
    source = s;
    s.onopen = () => {
      setConn(true);
      if (wasDown) { wasDown = false; refresh(); }
    };
    s.onerror = () => {
      if (source !== s) return;
      setConn(false);
      wasDown = true;
      // The browser retries by itself unless the stream was refused; then retry here.
      if (s.readyState === EventSource.CLOSED) setTimeout(() => open(url, handlers, onEnd), 1000);
    };
    for (const [name, fn] of Object.entries(handlers)) s.addEventListener(name, fn);
    if (onEnd) s.addEventListener("end", () => { s.close(); onEnd(); });
  };

  const watchAll = () => {
    const ref = live && live.dataset.ref;
    const url = "/api/v1/events/stream" + (ref ? "?ref=" + encodeURIComponent(ref) : "");
    open(() => url, { partitionEvent: () => refresh() });
  };

  // Backfills are driven by other processes whose want events the partition stream does
  // not carry: while a page shows a running backfill, it is also refreshed every 2 s.
  if (live && live.dataset.poll) {
    setInterval(() => { if (document.querySelector('[data-running="true"]')) refresh(); }, 2000);
  }

  if (runId && live.dataset.finished !== "true") {
    open(() => "/api/v1/builds/" + encodeURIComponent(runId) + "/events?after=" + lastSeq,
      { jobGraphRunEvent: onRunEvent, partitionEvent: onRunEvent },
      () => { refresh(); watchAll(); });
  } else {
    watchAll();
  }
})();
