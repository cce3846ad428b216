// Switchboard panel: confirmations and the dashboard's polling. No
// framework; the pages work without this file except for the live
// dashboard.
"use strict";

document.addEventListener("submit", (e) => {
  const msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) e.preventDefault();
});

(function dashboard() {
  const tiles = document.getElementById("tiles");
  if (!tiles) return;
  const period = 2000, keep = 150; // 5 minutes of points
  const hist = { requests: [], errors: [] };
  let last = null;

  function fmt(v) {
    if (v >= 100 || v === 0) return Math.round(v).toString();
    return v.toFixed(1);
  }

  function draw() {
    const all = hist.requests.concat(hist.errors);
    const top = Math.max(1, ...all);
    for (const k of ["requests", "errors"]) {
      // The newest point at the right edge, older ones to its left.
      // The first minute is spread over the width, then 5 minutes.
      const n = hist[k].length, step = 600 / (Math.max(n, 30) - 1);
      const pts = hist[k].map((v, i) => `${600 - (n - 1 - i) * step},${155 - (v / top) * 145}`);
      document.getElementById("line-" + k).setAttribute("points", pts.join(" "));
    }
    document.getElementById("chart-max").textContent = "top of the chart: " + fmt(top) + "/s";
  }

  async function poll() {
    if (document.hidden) return;
    let res;
    try {
      res = await fetch("/ui/stats.json", { credentials: "same-origin", cache: "no-store" });
    } catch (e) {
      return;
    }
    if (res.status === 401) { window.location = "/ui/login"; return; }
    if (!res.ok) return;
    const v = await res.json();
    const now = Date.now();
    for (const el of tiles.querySelectorAll(".tile")) {
      const id = el.dataset.id, val = v[id] || 0;
      if (el.dataset.rate === "true") {
        document.getElementById("total-" + id).textContent = fmt(val);
        if (last) {
          const rate = Math.max(0, (val - (last.v[id] || 0)) / ((now - last.t) / 1000));
          document.getElementById("tile-" + id).textContent = fmt(rate);
          if (hist[id]) {
            hist[id].push(rate);
            if (hist[id].length > keep) hist[id].shift();
          }
        }
      } else {
        document.getElementById("tile-" + id).textContent = fmt(val);
      }
    }
    last = { t: now, v: v };
    draw();
  }
  poll();
  setInterval(poll, period);
})();
