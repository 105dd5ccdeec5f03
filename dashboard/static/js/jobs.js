// Jobs: live progress, a retrain button, batch scoring with upload and job progress,
// the result download, and each task in Flower.
import { download, get, send, uploadKeyed } from "./api.js";
import { $, fill, fmtTime, h, safeUrl } from "./dom.js";
import { currentModel, modelPath } from "./scope.js";
import { askKey, changed, confirmAction, describeError, notice, progressBar } from "./ui.js";

function summary(job) {
  if (job.error) return `${job.error.type || "error"}: ${job.error.message}`;
  return job.message || (job.result && job.result.message) || "";
}

// Where a job is, in words: its step while it runs, where it ended once it has.
function progressText(job) {
  if (job.state === "succeeded") return "done";
  if (job.state === "failed" || job.state === "cancelled") return `${job.state} at ${job.progress}%`;
  return `${job.progress}% ${job.stage || job.state}`;
}

function links(job) {
  const items = [];
  if (job.kind === "batch_score" && job.state === "succeeded") {
    const fetchFile = () => download(`/jobs/${job.id}/result`, `scores-${job.id}.csv`, askKey)
      .catch((error) => notice(describeError(error), "error"));
    items.push(h("button", { type: "button", class: "link", onclick: fetchFile }, "download"));
  }
  const flower = safeUrl(job.flower_url);
  if (flower) items.push(" ", h("a", { href: flower, target: "_blank", rel: "noopener" }, "Flower"));
  return items;
}

export async function refresh(state) {
  const jobs = await get(`/jobs?page_size=50&model=${encodeURIComponent(currentModel())}`);
  state.busy = jobs.data.jobs.some((job) => job.state === "queued" || job.state === "running");
  fill($("#jobs-table tbody"), jobs.data.jobs.map((job) => h("tr", { "data-job": String(job.id), class: job.state },
    h("td", {}, String(job.id)), h("td", {}, job.kind), h("td", {}, job.state),
    h("td", {}, progressBar(job.progress, progressText(job))),
    h("td", {}, job.reason || ""), h("td", {}, summary(job)), h("td", {}, job.worker || ""),
    h("td", {}, fmtTime(job.created_at)),
    h("td", {}, links(job)))));
  return [jobs];
}

async function retrain() {
  if (!(await confirmAction(`Start a retrain of ${currentModel()} now?`))) return;
  try {
    const accepted = await send("POST", modelPath("/retrain"), { body: { reason: "retrain from the dashboard" } }, askKey);
    notice(`Retrain queued as job ${accepted.job_id}.`, "ok");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

async function score(event) {
  event.preventDefault();
  const file = $("#score-file").files[0];
  if (!file) return notice("Choose a CSV file first.", "error");
  const form = new FormData();
  form.append("file", file);
  form.append("reason", `batch score of ${file.name} from the dashboard`);
  try {
    const path = `/jobs/batch-score?model=${encodeURIComponent(currentModel())}`;
    const accepted = await uploadKeyed(path, form, $("#upload-progress"), askKey);
    if (!accepted) return;
    notice(`Scoring ${file.name} as job ${accepted.job_id}.`, "ok");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

export function setup() {
  $("#retrain").addEventListener("click", retrain);
  $("#score-form").addEventListener("submit", score);
}
