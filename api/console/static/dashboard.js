// Draws the dashboard's charts from the JSON the page embeds (<script type="application/json" id="series">);
// no inline script, so the page keeps its Content-Security-Policy (script-src 'self').
(function () {
  var source = document.getElementById("series");
  if (!source || typeof Chart === "undefined") return;
  var series = JSON.parse(source.textContent);
  var colours = ["#2754c5", "#067647", "#b42318", "#b54708", "#6941c6", "#0e7090", "#c11574"];
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var chart = series[canvas.dataset.chart];
    if (!chart) return;
    var datasets = chart.lines.map(function (line, i) {
      return {
        label: line.label,
        data: line.values,
        borderColor: colours[i % colours.length],
        backgroundColor: colours[i % colours.length] + "33",
        fill: chart.kind === "bar",
        tension: 0.2,
        pointRadius: chart.labels.length > 60 ? 0 : 2,
      };
    });
    new Chart(canvas, {
      type: chart.kind || "line",
      data: { labels: chart.labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: chart.kind === "bar" }, y: { beginAtZero: true, stacked: chart.kind === "bar" } },
        plugins: { legend: { display: datasets.length > 1 } },
      },
    });
    canvas.dataset.drawn = "yes";
  });
})();
