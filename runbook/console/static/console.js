// The live feed: one EventSource per log. New records update the transfers table and an
// open transfer's timeline; the badge in the header says whether the feed is connected.
// EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed.
"use strict";

(function () {
  const body = document.body;
  const badge = document.getElementById("live");
  const after = (body.dataset.after || "").split(",").filter((s) => s !== "");
  const page = body.dataset.page;
  const key = body.dataset.key;
  const open = new Set();

  function show(state, text) {
    if (!badge) return;
    badge.className = "live " + state;
    badge.textContent = text;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function rowFor(row) {
    const tr = document.createElement("tr");
    tr.dataset.key = row.key;
    tr.className = "state-" + row.state + " fresh";
    const first = document.createElement("td");
    const link = document.createElement("a");
    link.className = "tid";
    link.href = "/transfer/" + encodeURIComponent(row.key);
    link.textContent = row.transfer_id;
    first.appendChild(link);
    const art = document.createElement("div");
    art.className = "dim";
    art.textContent = row.artifact_id;
    first.appendChild(art);
    tr.appendChild(first);
    const st = document.createElement("td");
    const b = document.createElement("span");
    b.className = "badge state-" + row.state;
    b.textContent = row.state;
    st.appendChild(b);
    tr.appendChild(st);
    tr.appendChild(cell(row.reason_code, "reason"));
    tr.appendChild(cell(row.cause, "cause"));
    tr.appendChild(cell(String(row.attempts), "num"));
    tr.appendChild(cell(fmt(row.bytes_committed) + (row.size ? " / " + fmt(row.size) : ""), "num"));
    tr.appendChild(cell(row.duration_ms.toFixed(1) + " ms", "num"));
    tr.appendChild(cell(String(row.last_seq), "num"));
    return tr;
  }

  function onTransfers(item) {
    const table = document.querySelector("#transfers tbody");
    if (!table || !item.row) return;
    const fresh = rowFor(item.row);
    const old = table.querySelector('tr[data-key="' + CSS.escape(item.row.key) + '"]');
    if (old) { old.replaceWith(fresh); return; }
    const empty = table.querySelector("td.empty");
    if (empty) empty.parentElement.remove();
    table.insertBefore(fresh, table.firstChild);
  }

  function onTransfer(item) {
    if (item.key !== key) return;
    const table = document.querySelector("#timeline tbody");
    if (!table) return;
    const e = item.entry;
    const tr = document.createElement("tr");
    tr.className = "group-" + e.group + (e.reason_code ? " failed" : "") + " fresh";
    const seq = document.createElement("td");
    seq.className = "num";
    const a = document.createElement("a");
    a.href = "/event/" + item.log + "/" + e.seq;
    a.textContent = String(e.seq);
    seq.appendChild(a);
    tr.appendChild(seq);
    tr.appendChild(cell(e.ts, "dim"));
    tr.appendChild(cell(e.since_previous_ms.toFixed(1), "num"));
    tr.appendChild(cell(e.group));
    tr.appendChild(cell(e.summary));
    table.appendChild(tr);
    if (item.row) {
      const state = document.getElementById("state");
      if (state) { state.textContent = item.row.state; state.className = "badge state-" + item.row.state; }
    }
  }

  function connect(log, since) {
    const source = new EventSource("/live?log=" + log + "&after=" + since);
    source.onopen = function () { open.add(log); show("connected", "live: connected"); };
    source.onerror = function () { open.delete(log); show("lost", "live: lost, reconnecting…"); };
    source.addEventListener("record", function (event) {
      const item = JSON.parse(event.data);
      if (page === "transfers") onTransfers(item);
      if (page === "transfer") onTransfer(item);
    });
  }

  after.forEach(function (since, log) { connect(log, since); });
  if (!after.length) show("unknown", "live: off on this page");

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.dataset.copy).then(function () { button.textContent = "copied"; });
    });
  });
})();
