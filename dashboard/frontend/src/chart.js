// The time series of the chosen metric (uPlot: a canvas, ~20 KB gzipped), with the
// previous period as a dashed line when comparing. Colours come from the page's CSS
// variables, so the chart follows light and dark mode.
import uPlot from 'uplot';
import {formatBucket} from './format.js';
import {formatMetric, isCount} from './metrics.js';

const HEIGHT = 260;
// Steps between a count's ticks: whole numbers only (uPlot's default steps include
// 0.2 and 0.5, which a count shows as "0 0 1 1").
const COUNT_STEPS = Array.from({length: 10}, (_, power) => [1, 2, 5].map(step => step * 10 ** power)).flat();

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// `points`: [{date, value}], value null for a bucket without data yet (drawn as a gap);
// `previous`: the values of the period before, one under each point.
export function drawChart(container, {metric, label, interval, points, previous}) {
  container.replaceChildren();
  // Every point's label, kept for what cannot read the canvas (as data-y-labels below).
  container.dataset.xLabels = points.map(p => formatBucket(p.date, interval)).join('|');
  const xs = points.map((_, i) => i);
  const data = [xs, points.map(p => p.value)];
  const series = [
    {label: interval === 'hour' ? 'Hour' : interval === 'month' ? 'Month' : 'Day',
      value: (u, i) => (i == null || points[i] == null ? '—' : formatBucket(points[i].date, interval))},
    {label, stroke: color('--accent'), fill: color('--accent-soft'), width: 2,
      points: {show: points.length <= 45}, value: (u, v) => formatMetric(metric, v)},
  ];
  if (previous) {
    data.push(xs.map(i => previous[i] ?? null));
    series.push({label: 'Previous period', stroke: color('--muted'), width: 1.5, dash: [5, 5],
      points: {show: false}, value: (u, v) => formatMetric(metric, v)});
  }
  const grid = {stroke: color('--grid'), width: 1};
  const axis = {stroke: color('--muted'), grid, ticks: {show: false}, font: '12px system-ui, sans-serif'};
  const chart = new uPlot({
    width: Math.max(280, container.clientWidth),
    height: HEIGHT,
    series,
    padding: [12, 28, 0, 0],
    scales: {x: {time: false}, y: {range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1]}},
    axes: [
      {...axis, space: 60, values: (u, splits) => splits.map(i => (Number.isInteger(i) && points[i] ? formatBucket(points[i].date, interval) : ''))},
      {...axis, size: 56, ...(isCount(metric) ? {incrs: COUNT_STEPS} : {}),
        values: (u, splits) => yLabels(container, metric, splits)},
    ],
    cursor: {drag: {x: false, y: false}},
    legend: {live: true},
  }, data, container);
  const resize = new ResizeObserver(() => chart.setSize({width: Math.max(280, container.clientWidth), height: HEIGHT}));
  resize.observe(container);
  return () => {
    resize.disconnect();
    chart.destroy();
  };
}

// The value axis's labels, also kept on the container (data-y-labels) for what
// cannot read the canvas: tests, and anyone inspecting the page.
function yLabels(container, metric, splits) {
  const labels = splits.map(v => formatMetric(metric, v));
  container.dataset.yLabels = labels.join(' ');
  return labels;
}
