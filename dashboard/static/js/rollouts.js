// Rollouts: the shown model's running rollout with both arms side by side and the
// monitor's current verdict (promote or abort by hand after a confirmation), a form
// to start one, and the past ones with their outcome and why.
import { ApiError, get, send } from "./api.js";
import { $, fill, fmtNumber, fmtPercent, fmtTime, h } from "./dom.js";
import { currentModel, modelPath } from "./scope.js";
import { askKey, changed, confirmAction, describeError, notice } from "./ui.js";

function interval(figure, percent) {
  if (!figure || figure.value === null || figure.value === undefined) return "–";
  const f = percent ? (v) => fmtPercent(v) : (v) => fmtNumber(v, 4);
  return `${f(figure.value)} (${f(figure.low)} to ${f(figure.high)})`;
}

function armRow(name, version, arm, regression) {
  const metric = regression ? interval(arm.mae, false) : interval(arm.accuracy, true);
  return h("tr", { "data-arm": name },
    h("td", {}, name), h("td", {}, `v${version}`), h("td", {}, fmtNumber(arm.requests, 0)),
    h("td", {}, fmtPercent(arm.error_rate.value)), h("td", {}, fmtNumber(arm.latency_ms.p50, 1)),
    h("td", {}, fmtNumber(arm.latency_ms.p99, 1)), h("td", {}, fmtNumber(arm.labelled, 0)),
    h("td", {}, metric));
}

function showCurrent(rollout) {
  const regression = rollout.comparison.task === "regression";
  const arms = rollout.comparison.arms;
  const who = rollout.mode === "shadow" ? "challenger (shadow)" : "challenger";
  fill($("#rollout-summary"), `${rollout.mode} rollout ${rollout.id}: version ${rollout.challenger.version} beside champion version ${rollout.champion.version}, share ${fmtPercent(rollout.share, 0)}, since ${fmtTime(rollout.started_at)} (started by ${rollout.started_by}).`);
  fill($("#rollout-metric"), regression ? "MAE (95% interval)" : "accuracy (95% interval)");
  fill($("#rollout-arms tbody"),
    armRow("champion", rollout.champion.version, arms.champion, regression),
    armRow(who, rollout.challenger.version, arms.challenger, regression));
  const diff = rollout.comparison.difference;
  const agreement = rollout.comparison.agreement;
  fill($("#rollout-difference"),
    `Challenger minus champion: ${interval(diff, !regression)}.`,
    agreement && !regression ? ` Agreement on the same rows: ${interval(agreement, true)} of ${fmtNumber(agreement.compared, 0)}.` : "");
  const verdict = rollout.verdict;
  const el = $("#rollout-verdict");
  el.dataset.decision = verdict.decision;
  fill(el, h("strong", {}, `Verdict now: ${verdict.decision}`), `: ${verdict.reason}.`);
}

function historyRow(r) {
  return h("tr", { "data-rollout": String(r.id), class: r.state },
    h("td", {}, String(r.id)), h("td", {}, r.mode), h("td", {}, `v${r.challenger.version}`),
    h("td", {}, fmtPercent(r.share, 0)), h("td", {}, r.state), h("td", {}, r.decided_by || "–"),
    h("td", {}, r.reason || "–"), h("td", {}, fmtTime(r.started_at)), h("td", {}, fmtTime(r.ended_at)));
}

// The history says whether one runs (its newest entry), so the page never asks for
// a current rollout that is not there; one that ended in between is a 404: none.
async function current(past) {
  const newest = past.data.rollouts[0];
  if (!newest || newest.state !== "running") return null;
  try {
    return await get(modelPath("/rollouts/current"));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export async function refresh() {
  const [past, versions] = await Promise.all([get(modelPath("/rollouts")), get(modelPath("/versions"))]);
  const running = await current(past);
  fill($("#rollout-of"), currentModel());
  $("#rollout-current").hidden = !running;
  $("#rollout-form").hidden = Boolean(running);
  if (running) showCurrent(running.data);
  const candidates = versions.data.models.filter((m) => m.state !== "champion");
  const select = $("#rollout-version");
  const options = candidates.map((m) => `${m.version}`).join(",");
  if (select.dataset.options !== options) {
    fill(select, candidates.map((m) => h("option", { value: m.version }, `v${m.version} · ${m.model_type} (${m.state})`)));
    select.dataset.options = options;
  }
  fill($("#rollouts-table tbody"), past.data.rollouts.map(historyRow));
  return [running, past, versions].filter(Boolean);
}

async function decide(action) {
  const text = action === "promote"
    ? `Promote the challenger of ${currentModel()} to champion now?`
    : `Abort the rollout of ${currentModel()}? The champion alone serves again.`;
  if (!(await confirmAction(text))) return;
  try {
    await send("POST", modelPath(`/rollouts/current/${action}`), { body: { reason: `${action === "promote" ? "promoted" : "aborted"} from the dashboard` } }, askKey);
    notice(`Done: rollout ${action === "promote" ? "promoted" : "aborted"}.`, "ok");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

async function start(event) {
  event.preventDefault();
  const form = event.target;
  const body = { version: Number(form.elements.version.value), mode: form.elements.mode.value };
  if (form.elements.share.value) body.share = Number(form.elements.share.value);
  const criteria = {};
  for (const name of ["min_labels", "max_accuracy_drop"]) {
    if (form.elements[name].value) criteria[name] = Number(form.elements[name].value);
  }
  if (Object.keys(criteria).length) body.criteria = criteria;
  try {
    const started = await send("POST", modelPath("/rollouts"), { body }, askKey);
    if (!started) return;
    notice(`Started a ${started.mode} rollout of version ${started.challenger.version}.`, "ok");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

export function setup() {
  $("#rollout-promote").addEventListener("click", () => decide("promote"));
  $("#rollout-abort").addEventListener("click", () => decide("abort"));
  $("#rollout-form").addEventListener("submit", start);
}
