// Marks the page once laid out: how many charts have a visible size. Headless tests read
// the attribute from the DOM; nothing is fetched.
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('figure.chart');
  var drawn = 0;
  charts.forEach(function (c) {
    var g = c.querySelector('svg, img');
    if (g) { var box = g.getBoundingClientRect(); if (box.width > 0 && box.height > 0) { drawn += 1; } }
  });
  document.body.setAttribute('data-charts-drawn', String(drawn));
});
