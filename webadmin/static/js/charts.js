// Draw every <canvas data-chart-source> with Chart.js from the JSON block next to it.
// Lines of a "group by" value (keys "group-0", "group-1", ...) take the next colour of GROUPS.
(function () {
  "use strict";
  if (!window.Chart) { return; }
  var palette = { total: "#1d2330", answered: "#2e9e5b", missed: "#d9534f", target: "#f0ad4e",
                  first: "#3366cc", repeat: "#8e6cc2", size: "#999999", peak: "#d9534f", recommended: "#2e9e5b" };
  var GROUPS = ["#3366cc", "#2e9e5b", "#d9534f", "#f0ad4e", "#8e6cc2", "#17a2b8"];
  function colour(key) {
    if (palette[key]) { return palette[key]; }
    var group = /^group-(\d+)$/.exec(key || "");
    return group ? GROUPS[Number(group[1]) % GROUPS.length] : "#666666";
  }
  document.querySelectorAll("canvas[data-chart-source]").forEach(function (canvas) {
    var holder = document.getElementById(canvas.getAttribute("data-chart-source"));
    if (!holder) { return; }
    var data = JSON.parse(holder.textContent);
    var kind = canvas.getAttribute("data-chart-kind") || "line";
    new window.Chart(canvas, {
      type: kind,
      data: {
        labels: data.labels,
        datasets: data.datasets.map(function (d) {
          var color = colour(d.key);
          return { label: d.label, data: d.data, borderColor: color, backgroundColor: color, tension: 0.2,
                   borderWidth: d.key === "total" ? 3 : 2, pointRadius: kind === "line" ? 2 : 0 };
        })
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
                 interaction: { mode: "index", intersect: false },
                 scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  });
})();
