// Demo: switch demo traffic to a drift scenario, or reset the demo, each confirmed,
// the reset with its job's progress.
import { get, send } from "./api.js";
import { $, fill } from "./dom.js";
import { askKey, changed, confirmAction, describeError, notice } from "./ui.js";

let resetJob = null;

export async function refresh(state) {
  const scenario = await get("/demo/scenario");
  state.busy = resetJob !== null;
  fill($("#demo-scenario"), scenario.data.scenario);
  if (resetJob) {
    const job = (await get(`/jobs/${resetJob}`)).data;
    $("#reset-progress").value = job.progress;
    fill($("#reset-stage"), `${job.state}: ${job.stage || ""} ${job.progress}%`);
    if (["succeeded", "failed", "cancelled"].includes(job.state)) {
      resetJob = null;
      notice(job.state === "succeeded" ? "The demo is reset." : `The reset ${job.state}: ${job.error ? job.error.message : ""}`, job.state === "succeeded" ? "ok" : "error");
    }
  }
  return [scenario];
}

async function startScenario(event) {
  event.preventDefault();
  const scenario = $("#drift-scenario").value;
  if (!(await confirmAction(`Switch demo traffic to the ${scenario} scenario?`))) return;
  try {
    await send("POST", "/demo/drift", { body: { scenario } }, askKey);
    fill($("#demo-scenario"), scenario);
    notice(`Demo traffic now follows ${scenario}; drift checks will see it within two checks.`, "ok");
  } catch (error) {
    notice(describeError(error), "error");
  }
}

async function reset() {
  if (!(await confirmAction("Reset the demo? Data, jobs, alerts and versions are cleared and the demo model is retrained."))) return;
  try {
    const accepted = await send("POST", "/demo/reset", {}, askKey);
    resetJob = accepted.job_id;
    $("#reset-progress").hidden = false;
    $("#reset-progress").value = 0;
    fill($("#reset-stage"), "queued");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

export function setup() {
  $("#drift-form").addEventListener("submit", startScenario);
  $("#demo-reset").addEventListener("click", reset);
}
