// Draws the usage page's charts with Chart.js (served from /console/static/vendor).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  if (typeof Chart === "undefined") { return; }  // the tables below show the same numbers
  Chart.defaults.animation = false;  // drawn at once: also what a screenshot captures
  Chart.defaults.maintainAspectRatio = false;
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const draw = (id, config) => {
    const canvas = document.getElementById(id);
    if (canvas) { new Chart(canvas, config); }
  };
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
