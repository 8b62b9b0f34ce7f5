// Renders every chart from its spec (charts.js) and its data (the JSON script inside its figure),
// and makes tables with class "sortable" sort by a click on a column heading.
(function () {
  "use strict";
  for (const figure of document.querySelectorAll("figure[data-chart]")) {
    const spec = structuredClone(window.REPORT_CHARTS[figure.dataset.chart]);
    spec.datasets = JSON.parse(figure.querySelector("script[type='application/json']").textContent);
    vegaEmbed(figure.querySelector(".chart-canvas"), spec, { actions: false, renderer: "svg" })
      .catch(function (error) { console.error("chart " + figure.dataset.chart + ": " + error); });
  }

  function sortKey(cell) {
    const text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const number = Number(text.replace(/,/g, ""));
    return text !== "" && !Number.isNaN(number) ? number : text.toLowerCase();
  }

  for (const table of document.querySelectorAll("table.sortable")) {
    const headings = table.tHead.rows[0].cells;
    Array.from(headings).forEach(function (heading, column) {
      heading.setAttribute("aria-sort", "none");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = heading.textContent;
      heading.replaceChildren(button);
      heading.addEventListener("click", function () {  // the button's clicks and keypresses bubble here
        const ascending = heading.getAttribute("aria-sort") !== "ascending";
        for (const other of headings) other.setAttribute("aria-sort", "none");
        heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
          const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return ascending ? order : -order;
        });
        body.append(...rows);
      });
    });
  }
})();
