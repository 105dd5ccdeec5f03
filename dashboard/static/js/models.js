// Models: every version with its metrics, state, what triggered it and the gate's
// verdict (from its retrain job); promote and rollback after a confirmation.
import { get, send } from "./api.js";
import { $, fill, fmtNumber, fmtTime, h } from "./dom.js";
import { askKey, changed, confirmAction, describeError, notice } from "./ui.js";

function trigger(job) {
  if (!job) return "trained directly";
  const params = job.params || {};
  return params.trigger ? `automatic: ${params.trigger}` : job.reason || "manual";
}

function gate(job) {
  const result = job && job.result;
  if (!result || !result.outcome) return "–";
  return `${result.outcome}: F1 ${fmtNumber(result.challenger_f1)} vs ${fmtNumber(result.champion_f1)}`;
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

export async function refresh() {
  const [models, jobs] = await Promise.all([get("/models"), get("/jobs?kind=retrain&page_size=200")]);
  const byJob = new Map(jobs.data.jobs.map((job) => [job.id, job]));
  const rows = models.data.models.map((m) => {
    const job = m.job_id ? byJob.get(m.job_id) : null;
    const promote = m.state === "champion" ? null : h("button", {
      type: "button", class: "small",
      onclick: () => act(`Promote version ${m.version} to champion?`, "POST", `/models/${m.version}/promote`, { reason: "promoted from the dashboard" }),
    }, "Promote");
    return h("tr", { class: m.state, "data-version": String(m.version) },
      h("td", {}, `v${m.version}`), h("td", {}, m.state), h("td", {}, m.model_type),
      h("td", {}, fmtNumber(m.accuracy)), h("td", {}, fmtNumber(m.f1_score)),
      h("td", {}, fmtNumber(m.training_data_size, 0)), h("td", {}, trigger(job)),
      h("td", {}, gate(job)), h("td", {}, fmtTime(m.created_at)), h("td", {}, promote));
  });
  fill($("#models-table tbody"), rows);
  return [models, jobs];
}

export function setup() {
  $("#rollback").addEventListener("click", () =>
    act("Roll back to the previous champion?", "POST", "/model/rollback", { reason: "rollback from the dashboard" }));
}
