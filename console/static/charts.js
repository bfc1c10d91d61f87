// Draws the usage page's and a function page's charts with Chart.js (served from
// /console/static/vendor). The tables beside them show the same numbers without script.
"use strict";

function draw(id, config) {
  const canvas = document.getElementById(id);
  if (canvas) { new Chart(canvas, config); }
}

// A function's charts over time (console/timeline.py): requests, TTFT p50/p99, the share of
// cold starts, the cost per hour. Empty buckets have no TTFT or share: the lines skip them.
function functionChartConfigs(data) {
  const bar = (label, values) => ({type: "bar", data: {labels: data.labels,
    datasets: [{label: label, data: values}]}, options: {plugins: {legend: {display: false}}}});
  const requests = bar("requests", data.requests);
  requests.options.scales = {y: {beginAtZero: true, ticks: {precision: 0}}};
  const cold = bar("cold starts (%)", data.coldShare);
  cold.options.scales = {y: {min: 0, max: 100}};
  const cost = bar("USD per hour", data.costPerHour);
  cost.options.scales = {y: {beginAtZero: true}};
  const line = (label, values) => ({label: label, data: values, spanGaps: false,
                                    pointRadius: 3, showLine: true});
  const ttft = {type: "line", data: {labels: data.labels,
    // p99 dashed and drawn over p50 (a lower order is drawn later): with one request in
    // a bucket the two lines coincide, and both stay visible.
    datasets: [{...line("p50", data.ttftP50), order: 1},
               {...line("p99", data.ttftP99), order: 0, borderDash: [6, 4]}]},
    options: {scales: {y: {beginAtZero: true, title: {display: true, text: "ms"}}}}};
  return {"chart-fn-requests": requests, "chart-fn-ttft": ttft, "chart-fn-cold": cold,
          "chart-fn-cost": cost};
}

function drawFunctionCharts() {
  const source = document.getElementById("function-chart-data");
  if (!source) { return; }
  const configs = functionChartConfigs(JSON.parse(source.textContent));
  for (const [id, config] of Object.entries(configs)) {
    const chart = Chart.getChart(id);
    if (!chart) { draw(id, config); continue; }
    chart.data = config.data;  // fresh numbers after a run: the same chart, redrawn
    chart.update();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (typeof Chart === "undefined") { return; }
  Chart.defaults.animation = false;  // drawn at once: also what a screenshot captures
  Chart.defaults.maintainAspectRatio = false;
  drawFunctionCharts();
  // console.js swaps fresh numbers in after a playground run and says so.
  document.addEventListener("lorafaas:refreshed", drawFunctionCharts);
  const usage = document.getElementById("chart-data");
  if (!usage) { return; }
  const data = JSON.parse(usage.textContent);
  draw("chart-cost", {type: "bar", data: {labels: data.cost.labels,
    datasets: data.cost.series.map((s) => ({label: s.label, data: s.data}))},
    options: {scales: {x: {stacked: true}, y: {stacked: true, title: {display: true, text: "USD"}}}}});
  draw("chart-ttft", {type: "bar", data: {labels: data.ttft.labels,
    datasets: [{label: "activations", data: data.ttft.data}]}});
  draw("chart-start-kinds", {type: "doughnut", data: {labels: data.startKinds.labels,
    datasets: [{data: data.startKinds.data}]}});
  // Label only the powers of ten of a logarithmic axis, as money: $1e-6 … $100.
  const powerOfTen = (value) => {
    const exponent = Math.log10(value);
    if (Math.abs(exponent - Math.round(exponent)) > 1e-9) { return null; }
    return value >= 1 ? `$${Math.round(value)}` : `$${value.toExponential(0)}`;
  };
  if (data.dedicated) {
    // A logarithmic axis: a serverless bill can be a millionth of the dedicated one.
    draw("chart-dedicated", {type: "bar", data: {labels: data.dedicated.labels,
      datasets: [{label: "USD", data: data.dedicated.data}]},
      options: {scales: {y: {type: "logarithmic", ticks: {callback: powerOfTen}}}}});
  }
});
