// ferry report: hover figures on the timeline, sorting and filtering of the VM table.
// One listener per job, none per bar: the page may hold 20,000 bars and 10,000 rows.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  // The table comes in blocks of rows (see table() in html.rs).
  var bodies = Array.prototype.slice.call(document.querySelectorAll("#vms tbody"));
  var sizes = bodies.map(function (b) { return b.rows.length; });
  // The rows in the report's order: a move's index in the data is its index here.
  var rows = Array.prototype.slice.call(document.querySelectorAll("#vms tbody tr"));
  var lanes = document.getElementById("lanes");
  var tip = document.getElementById("tip");

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ms) { return new Date(data.t0 + ms).toISOString().slice(11, 19); }
  function took(ms) {
    if (ms < 59950) { return (ms / 1000).toFixed(1) + " s"; }
    var s = Math.round(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    return (h ? h + " h " + pad(m) : m) + " min " + pad(s % 60) + " s";
  }

  // [move, number, kind, outcome, start, end, target, wall, downtime, MiB, passes, message,
  //  estimated s, estimated downtime ms]: see data() in html.rs.
  function figures(a) {
    var cells = rows[a[0]].cells;
    var lines = [
      cells[0].textContent + " \u00b7 attempt " + a[1] + ", " + (a[2] === "l" ? "live" : "cold"),
      cells[2].textContent + " \u2192 " + data.h[a[6]] + " \u00b7 " +
        (a[3] === null ? "not ended" : data.s[a[3]]),
      clock(a[4]) + " \u2192 " + (a[5] === null ? "\u2026" : clock(a[5])) + " UTC" +
        (a[7] === null ? "" : " (" + took(a[7]) + ")")
    ];
    var f = [];
    if (a[8] !== null) { f.push("downtime " + a[8] + " ms"); }
    if (a[9] !== null) { f.push(a[9] + " MiB"); }
    if (a[10] !== null) { f.push(a[10] + " passes"); }
    if (f.length) { lines.push(f.join(" \u00b7 ")); }
    var e = [];
    if (a[12] !== null) { e.push(a[12] + " s"); }
    if (a[13] !== null) { e.push("downtime " + a[13] + " ms"); }
    if (e.length) { lines.push("estimated " + e.join(", ")); }
    // The attempt's own words, when they differ from the move's; then the move's story.
    if (a[11]) { lines.push(a[11]); }
    if (cells[11].textContent) { lines.push(cells[11].textContent); }
    return lines.join("\n");
  }

  function attemptOf(target) {
    var i = target.getAttribute && target.getAttribute("data-a");
    return i === null || i === undefined ? null : data.a[+i];
  }
  function place(e) {
    var x = e.clientX + 14, y = e.clientY + 14;
    if (x + tip.offsetWidth > innerWidth) { x = Math.max(0, e.clientX - tip.offsetWidth - 14); }
    if (y + tip.offsetHeight > innerHeight) { y = Math.max(0, e.clientY - tip.offsetHeight - 14); }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  // A roll's page has no run timeline nor VM table: its steps carry their own titles.
  if (lanes) {
    lanes.addEventListener("mouseover", function (e) {
      var a = attemptOf(e.target);
      if (a) { tip.textContent = figures(a); tip.hidden = false; place(e); }
    });
    lanes.addEventListener("mousemove", function (e) { if (!tip.hidden) { place(e); } });
    lanes.addEventListener("mouseout", function () { tip.hidden = true; });
    lanes.addEventListener("click", function (e) {
      var a = attemptOf(e.target);
      if (a) { reveal(a[0]); }
    });
  }

  function reveal(m) {
    var row = rows[m];
    row.hidden = false;
    row.scrollIntoView({ block: "center" });
    row.classList.add("hit");
    setTimeout(function () { row.classList.remove("hit"); }, 2500);
  }
  document.querySelectorAll("#failures li[data-m]").forEach(function (li) {
    li.addEventListener("click", function () { reveal(+li.getAttribute("data-m")); });
  });

  // Statuses sort by how bad they are, as the report orders them.
  var severity = {
    "FAILURE-LOST": 0, "ROLLBACK-FAILED": 0, "FAILURE-WAIT": 1, "FAILURE-INIT": 1,
    "PRECHECK-FAILED": 1, "ABORTED": 2, "SKIPPED-TIMEOUT": 2, "SKIPPED-DEPENDENCY": 2,
    "SKIPPED-NO-PREV-STATUS": 2, "MIGRATING": 3, "QUEUED": 3, "PENDING": 3,
    "SUCCESS": 4, "SUCCESS-COLD": 4, "ROLLED-BACK": 4
  };
  function key(row, column, type) {
    var cell = row.cells[column], text = cell.textContent;
    if (type === "v") { var v = cell.getAttribute("data-v"); return v === null ? null : +v; }
    if (type === "n") { return text === "" ? null : +text; }
    if (type === "s") { return text in severity ? severity[text] : 9; }
    return text === "" ? null : text.toLowerCase();
  }
  var heads = Array.prototype.slice.call(document.querySelectorAll("#vms th"));
  function sort(column) {
    var th = heads[column], type = th.getAttribute("data-t");
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var keyed = rows.map(function (row, i) { return [key(row, column, type), i, row]; });
    keyed.sort(function (a, b) {
      // Empty cells last either way; ties in the report's order.
      if (a[0] === null || b[0] === null) {
        return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
      }
      return a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] - b[1];
    });
    // Refill the blocks in the new order, each with as many rows as it had.
    var next = 0;
    bodies.forEach(function (body, b) {
      var fragment = document.createDocumentFragment();
      for (var end = next + sizes[b]; next < end; next++) { fragment.appendChild(keyed[next][2]); }
      body.appendChild(fragment);
    });
  }
  heads.forEach(function (th, column) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sort(column); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(column); } });
  });

  var filter = document.getElementById("filter"), texts = null, timer = 0;
  if (filter) {
    filter.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = filter.value.trim().toLowerCase();
        if (!texts) { texts = rows.map(function (r) { return r.textContent.toLowerCase(); }); }
        rows.forEach(function (r, i) { r.hidden = q !== "" && texts[i].indexOf(q) < 0; });
      }, 120);
    });
  }

  document.documentElement.setAttribute("data-ready", "");
})();
