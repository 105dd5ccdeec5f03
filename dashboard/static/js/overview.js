// Overview: cards for the serving model and the live window, charts over time, and
// per-feature drift against its threshold.
import { get } from "./api.js";
import { $, breakAfterSlashes, fill, fmtNumber, fmtPercent, h } from "./dom.js";
import { modelPath } from "./scope.js";

const charts = {};
// Time labels never overlap: a few, level, the rest skipped (Chart.js measures them).
const TIME_TICKS = { maxRotation: 0, autoSkip: true, autoSkipPadding: 12, maxTicksLimit: 8 };

function card(label, value, sub) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

// Lines carry the points, except a value with none beside it (a minute of traffic
// between quiet ones): it has no line to either side, so it gets a dot of its own.
function loneDot(ctx) {
  const data = ctx.dataset.data;
  const has = (i) => i >= 0 && i < data.length && data[i] !== null && data[i] !== undefined;
  return has(ctx.dataIndex) && !has(ctx.dataIndex - 1) && !has(ctx.dataIndex + 1) ? 3 : 0;
}

function lineChart(id, datasets, options = {}) {
  if (!window.Chart) return null;
  if (!charts[id]) {
    charts[id] = new window.Chart($(`#${id}`), {
      type: "line",
      data: { labels: [], datasets: datasets.map((label) => ({ label, data: [], tension: 0.2, pointRadius: loneDot })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { ticks: TIME_TICKS }, y: { beginAtZero: true, ...options.y } } },
    });
  }
  return charts[id];
}

function setSeries(chart, labels, series) {
  if (!chart) return;
  chart.data.labels = labels;
  series.forEach((values, index) => { chart.data.datasets[index].data = values; });
  chart.update();
}

function psiChart(check) {
  if (!window.Chart) return;
  const drifted = new Set((check && check.drifted_features) || []);
  const features = Object.entries((check && check.psi) || {}).map(([name, psi]) => [name, { psi, drifted: drifted.has(name) }]);
  const threshold = check && check.thresholds ? check.thresholds.psi : null;
  if (!charts.psi) {
    charts.psi = new window.Chart($("#chart-psi"), {
      type: "bar",
      data: { labels: [], datasets: [{ label: "PSI", data: [] }, { type: "line", label: "threshold", data: [], pointRadius: 0 }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        scales: { x: { ticks: { autoSkip: true, autoSkipPadding: 6, maxRotation: 60 } }, y: { beginAtZero: true } } },
    });
  }
  charts.psi.data.labels = features.map(([name]) => name);
  charts.psi.data.datasets[0].data = features.map(([, f]) => f.psi);
  charts.psi.data.datasets[0].backgroundColor = features.map(([, f]) => (f.drifted ? "#c0392b" : "#2e86c1"));
  charts.psi.data.datasets[1].data = features.map(() => threshold);
  charts.psi.update();
}

const clock = (iso) => new Date(iso).toLocaleTimeString();

// The retraining policy in one line: what it decided, why, and when it may act next.
function showPolicy(policy) {
  const next = policy.next_action_at ? ` Next possible retrain: ${clock(policy.next_action_at)}.` : "";
  const decided = policy.decided_at ? ` (${clock(policy.decided_at)})` : "";
  const el = $("#policy");
  el.dataset.decision = policy.decision;
  fill(el, h("strong", {}, `Retraining policy: ${policy.decision.replace("_", " ")}`),
    `${decided}: ${policy.reason}.${next}`);
}

export async function refresh(state) {
  const [metrics, history, drift, policy] = await Promise.all([
    get(modelPath("/metrics")),
    get(modelPath("/metrics/history?hours=6")),
    get(modelPath("/drift/history?limit=100")),
    get(modelPath("/retraining")),
  ]);
  showPolicy(policy.data);
  const m = metrics.data;
  const ci = m.accuracy_ci;
  const serving = state.model;
  fill($("#cards"),
    card("Serving version", serving ? `v${serving.version}` : "–", serving ? breakAfterSlashes(serving.model_type) : null),
    card("Predictions", fmtNumber(m.prediction_count, 0), `${fmtNumber(m.request_count, 0)} requests, last ${fmtNumber(m.window_minutes, m.window_minutes < 10 ? 1 : 0)} min`),
    card("Request rate", `${fmtNumber(m.request_rate_per_min, 1)}/min`, `last ${m.request_rate_seconds} s · errors ${fmtPercent(m.error_rate)}`),
    card("p99 latency", m.latency_ms.p99 === null ? "–" : `${fmtNumber(m.latency_ms.p99, 1)} ms`, `p50 ${fmtNumber(m.latency_ms.p50, 1)} ms`),
    m.task === "regression"
      ? card("MAE", fmtNumber(m.mae), m.mae === null ? "no labels yet" : `RMSE ${fmtNumber(m.rmse)} · R² ${fmtNumber(m.r2)}`)
      : card("Accuracy", fmtPercent(m.accuracy), ci ? `95% CI ${fmtPercent(ci.low)}–${fmtPercent(ci.high)}` : "no labels yet"),
    card("Label coverage", fmtPercent(m.label_coverage), `${fmtNumber(m.labeled_count, 0)} labelled`),
    card("Open alerts", String(m.open_alerts), m.drift ? `drift: ${m.drift.status}` : "no drift check yet"),
  );
  const snaps = history.data.snapshots;
  const labels = snaps.map((s) => clock(s.at));
  setSeries(lineChart("chart-volume", ["requests/min"]), labels, [snaps.map((s) => s.request_rate_per_min)]);
  setSeries(lineChart("chart-latency", ["p50", "p99"]), labels,
    [snaps.map((s) => s.latency_ms.p50), snaps.map((s) => s.latency_ms.p99)]);
  setSeries(lineChart("chart-accuracy", ["realised", "estimated"], { y: { max: 1 } }), labels,
    [snaps.map((s) => s.accuracy), snaps.map((s) => s.estimated_accuracy)]);
  const checks = drift.data.checks;
  setSeries(lineChart("chart-drift", ["drift share"], { y: { max: 1 } }),
    checks.map((c) => clock(c.checked_at)), [checks.map((c) => c.drift_share)]);
  const measured = checks.filter((c) => c.status !== "insufficient_data");
  psiChart(measured[measured.length - 1]);
  return [metrics, history, drift, policy];
}
