// Models: every model with its champion, task, traffic, accuracy or error, drift and
// open alerts (a row switches the dashboard to it); registering a model from a file;
// the shown model's versions with what triggered each and the gate's verdict, and
// promote and rollback after a confirmation.
import { get, send, uploadKeyed } from "./api.js";
import { $, fill, fmtNumber, fmtTime, h } from "./dom.js";
import { chooseModel, currentModel, modelPath } from "./scope.js";
import { askKey, changed, confirmAction, describeError, notice } from "./ui.js";

function trigger(job) {
  if (!job) return "trained directly";
  const params = job.params || {};
  return params.trigger ? `automatic: ${params.trigger}` : job.reason || "manual";
}

function gate(job) {
  const result = job && job.result;
  if (!result || !result.outcome) return "–";
  const metric = result.metric || "f1";
  return `${result.outcome}: ${metric.toUpperCase()} ${fmtNumber(result[`challenger_${metric}`])} vs ${fmtNumber(result[`champion_${metric}`])}`;
}

async function act(text, method, path, body) {
  if (!(await confirmAction(text))) return;
  try {
    await send(method, path, { body }, askKey);
    notice(`Done: ${text.replace(/\?$/, "")}.`, "ok");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

function modelRow(m) {
  const score = m.task === "regression" ? `MAE ${fmtNumber(m.mae)}` : fmtNumber(m.accuracy);
  const open = () => { chooseModel(m.name); changed(); };
  return h("tr", { "data-model": m.name, class: m.name === currentModel() ? "current" : "" },
    h("td", {}, h("button", { type: "button", class: "link", onclick: open }, m.name)),
    h("td", {}, m.task), h("td", {}, m.champion_version ? `v${m.champion_version}` : "–"),
    h("td", {}, String(m.versions)), h("td", {}, fmtNumber(m.traffic_per_min, 1)),
    h("td", {}, score), h("td", {}, m.drift || "–"), h("td", {}, String(m.open_alerts)));
}

function versionRow(m, byJob) {
  const job = m.job_id ? byJob.get(m.job_id) : null;
  const promote = m.state === "champion" ? null : h("button", {
    type: "button", class: "small",
    onclick: () => act(`Promote version ${m.version} of ${m.name} to champion?`, "POST",
      modelPath(`/versions/${m.version}/promote`), { reason: "promoted from the dashboard" }),
  }, "Promote");
  const scores = m.task === "regression"
    ? [fmtNumber(m.metrics.mae), fmtNumber(m.metrics.r2)]
    : [fmtNumber(m.accuracy), fmtNumber(m.f1_score)];
  const origin = m.provenance ? `registered ${m.provenance.format} file` : trigger(job);
  // a registered version was not trained here: the rows it was checked on
  const rows = m.provenance ? m.provenance.reference_rows : m.training_data_size;
  return h("tr", { class: m.state, "data-version": String(m.version) },
    h("td", {}, `v${m.version}`), h("td", {}, m.state), h("td", {}, m.model_type),
    runtimeCell(m), h("td", {}, scores[0]), h("td", {}, scores[1]),
    h("td", {}, fmtNumber(rows, 0)), h("td", {}, origin),
    h("td", {}, gate(job)), h("td", {}, fmtTime(m.created_at)), h("td", {}, promote));
}

// Which runtime serves a version: ONNX Runtime where its compiled model matched
// scikit-learn on the check, else scikit-learn with the reason beside it.
export function runtimeText(runtime, reason) {
  if (runtime === "onnx") return "ONNX Runtime";
  if (runtime === "sklearn") return `scikit-learn${reason ? ` (${reason})` : ""}`;
  return "not compiled yet";
}

function runtimeCell(m) {
  return h("td", { class: "runtime", title: m.runtime_reason || "" },
    runtimeText(m.runtime, m.runtime_reason));
}

export async function refresh(state) {
  const name = encodeURIComponent(currentModel());
  const [versions, jobs] = await Promise.all([
    get(modelPath("/versions")), get(`/jobs?kind=retrain&page_size=200&model=${name}`),
  ]);
  fill($("#all-models-table tbody"), state.models.map(modelRow));
  fill($("#versions-of"), currentModel());
  const regressor = (state.models.find((m) => m.name === currentModel()) || {}).task === "regression";
  fill($("#score-1"), regressor ? "MAE" : "accuracy");
  fill($("#score-2"), regressor ? "R²" : "F1");
  const byJob = new Map(jobs.data.jobs.map((job) => [job.id, job]));
  fill($("#models-table tbody"), versions.data.models.map((m) => versionRow(m, byJob)));
  return [versions, jobs];
}

async function register(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  if (!form.elements.promote.checked) data.delete("promote");
  try {
    const done = await uploadKeyed("/models", data, $("#register-progress"), askKey);
    if (!done) return;
    const promoted = done.promoted ? ", champion" : "";
    notice(`Registered ${done.name} version ${done.version} (${done.task}${promoted}).`, "ok");
    form.reset();
    chooseModel(done.name);
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

export function setup() {
  $("#rollback").addEventListener("click", () =>
    act(`Roll back ${currentModel()} to its previous champion?`, "POST", modelPath("/rollback"), { reason: "rollback from the dashboard" }));
  $("#register-form").addEventListener("submit", register);
}
