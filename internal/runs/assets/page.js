(function () {
  "use strict";
  var key = new URLSearchParams(location.search).get("code");
  if (key) {
    document.querySelectorAll("a[data-keep-key]").forEach(function (a) {
      var u = new URL(a.getAttribute("href"), location.href);
      if (u.origin === location.origin) {
        u.searchParams.set("code", key);
        a.setAttribute("href", u.pathname + u.search + u.hash);
      }
    });
  }
  document.querySelectorAll("table[data-sortable]").forEach(function (table) {
    var body = table.tBodies[0];
    if (!body) return;
    Array.prototype.forEach.call(body.rows, function (row, i) { row.dataset.order = i; });
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        var numeric = th.hasAttribute("data-num");
        var dir = th.getAttribute("aria-sort") === (numeric ? "descending" : "ascending") ? -1 : 1;
        if (numeric) dir = -dir;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        var value = function (row) {
          var cell = row.cells[col];
          var v = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
          return numeric ? Number(v) || 0 : v;
        };
        rows.sort(function (a, b) {
          var x = value(a), y = value(b);
          var c = numeric ? x - y : x.localeCompare(y);
          return c * dir || a.dataset.order - b.dataset.order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
