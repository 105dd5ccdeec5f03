// The dashboard's loop: show the page the hash names, refresh it every few seconds
// through the public API, watch for new alerts, and say when the API is unreachable
// while showing the data kept from before.
import * as alerts from "./alerts.js";
import { askKeyForReads, connection, get, onConnectionChange } from "./api.js";
import * as demo from "./demo.js";
import { $, fill, fmtClock, h } from "./dom.js";
import * as jobs from "./jobs.js";
import * as models from "./models.js";
import * as overview from "./overview.js";
import * as rollouts from "./rollouts.js";
import { chooseModel, currentModel, modelPath, scope } from "./scope.js";
import * as tester from "./tester.js";
import { askKey, changed, changes, describeError, notice, toast } from "./ui.js";

const POLL_MS = 3000;
const BUSY_POLL_MS = 1000; // while a job the page shows is queued or running
// The views this page has: the Demo view only in demo mode (MODELOPS_DEMO).
const PAGES = Object.fromEntries(
  Object.entries({ overview, models, rollouts, jobs, alerts, try: tester, demo })
    .filter(([name]) => document.getElementById(`page-${name}`)),
);
const state = { name: null, model: null, models: [], seenAlerts: null, oldestShown: null, busy: false };

function currentPage() {
  const name = location.hash.replace("#", "");
  return PAGES[name] ? name : "overview";
}

function show(name) {
  document.querySelectorAll(".page").forEach((el) => { el.hidden = el.dataset.page !== name; });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
}

function offlineBanner() {
  const el = $("#offline");
  if (connection.online) {
    el.hidden = true;
    return;
  }
  const kept = state.oldestShown ? ` Showing the data kept in this browser from ${fmtClock(state.oldestShown)}.` : "";
  fill(el, `The API cannot be reached (since ${fmtClock(connection.lostAt)}).${kept} Retrying every ${POLL_MS / 1000} s.`);
  el.hidden = false;
}

function noteCached(answers) {
  const times = answers.map((a) => a && a.cachedAt).filter(Boolean);
  state.oldestShown = times.length ? Math.min(...times) : null;
}

// The switcher lists every model; the page shows the one the URL names.
async function refreshModels() {
  const answer = await get("/models");
  scope.defaultModel = answer.data.default_model;
  state.models = answer.data.models;
  const name = currentModel();
  const names = state.models.map((m) => m.name);
  if (!names.includes(name)) names.push(name);
  const select = $("#model-switch");
  if (select.dataset.names !== names.join(",") || select.value !== name) {
    fill(select, names.map((n) => h("option", { value: n, selected: n === name }, n)));
    select.dataset.names = names.join(",");
    select.value = name;
  }
  return answer;
}

async function refreshHeader() {
  state.name = currentModel();
  state.model = null;
  const answer = await get(modelPath());
  state.model = answer.data;
  const runtime = state.model.serving_runtime
    ? ` · ${models.runtimeText(state.model.serving_runtime, state.model.serving_reason)}` : "";
  fill($("#serving"), `serving v${state.model.version} · ${state.model.model_type}${runtime}`);
  return answer;
}

async function watchAlerts() {
  const answer = await get("/alerts?state=open&limit=200");
  const open = answer.data.alerts;
  const badge = $("#alert-badge");
  fill(badge, String(open.length));
  badge.hidden = open.length === 0;
  document.title = open.length ? `(${open.length}) ModelOps` : "ModelOps";
  if (state.seenAlerts !== null && !answer.cachedAt) {
    for (const alert of open.filter((a) => !state.seenAlerts.has(a.id))) {
      toast(`New ${alert.severity} alert of ${alert.model || "the deployment"}: ${alert.rule} (${alert.subject}): ${alert.message}`, alert.severity);
    }
  }
  if (!answer.cachedAt) state.seenAlerts = new Set(open.map((a) => a.id));
  return answer;
}

let running = false;

async function tick() {
  if (running) return;
  running = true;
  const page = currentPage();
  state.busy = false;
  try {
    const answers = [await refreshModels().catch(() => null)];
    answers.push(await refreshHeader().catch((error) => {
      fill($("#serving"), `${currentModel()}: ${describeError(error)}`);
      return null;
    }));
    answers.push(await watchAlerts().catch(() => null));
    answers.push(...(await PAGES[page].refresh(state)));
    noteCached(answers);
  } catch (error) {
    if (connection.online) notice(`Could not load ${page}: ${describeError(error)}`, "error");
  } finally {
    running = false;
    offlineBanner();
  }
}

function start() {
  askKeyForReads(askKey);
  for (const module of Object.values(PAGES)) if (module.setup) module.setup(state);
  onConnectionChange(offlineBanner);
  changes.addEventListener("changed", () => tick());
  window.addEventListener("hashchange", () => { show(currentPage()); tick(); });
  window.addEventListener("popstate", () => tick());
  $("#model-switch").addEventListener("change", (event) => { chooseModel(event.target.value); changed(); });
  show(currentPage());
  const loop = async () => {
    await tick();
    setTimeout(loop, state.busy ? BUSY_POLL_MS : POLL_MS);
  };
  loop();
  document.body.append(h("span", { id: "ready", hidden: true }));
}

start();
