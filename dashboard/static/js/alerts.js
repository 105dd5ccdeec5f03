// Alerts: open, acknowledged and resolved, with every delivery attempt; acknowledge.
import { get, send } from "./api.js";
import { $, fill, fmtNumber, fmtTime, h } from "./dom.js";
import { currentModel } from "./scope.js";
import { askKey, changed, describeError, notice } from "./ui.js";

const STATES = ["open", "acknowledged", "resolved"];

async function acknowledge(id) {
  try {
    await send("POST", `/alerts/${id}/ack`, {}, askKey);
    notice(`Alert ${id} acknowledged.`, "ok");
    changed();
  } catch (error) {
    notice(describeError(error), "error");
  }
}

function alertItem(alert) {
  const deliveries = alert.deliveries.map((d) => h("li", {},
    `${d.channel} attempt ${d.attempt}: ${d.status}${d.status_code ? ` (${d.status_code})` : ""}${d.error ? ` ${d.error}` : ""} at ${fmtTime(d.at)}`));
  return h("li", { class: `alert ${alert.severity} ${alert.state}`, "data-alert": String(alert.id) },
    h("div", { class: "title" }, h("strong", {}, alert.rule), ` · ${alert.subject} · ${alert.severity}`),
    h("div", { class: "message" }, alert.message),
    h("div", { class: "meta" }, `value ${fmtNumber(alert.value)} threshold ${fmtNumber(alert.threshold)} · opened ${fmtTime(alert.opened_at)}`,
      alert.resolved_at ? ` · resolved ${fmtTime(alert.resolved_at)}` : "",
      alert.acknowledged_at ? ` · acknowledged ${fmtTime(alert.acknowledged_at)}` : ""),
    alert.state === "open" ? h("button", { type: "button", class: "small", onclick: () => acknowledge(alert.id) }, "Acknowledge") : null,
    h("details", {}, h("summary", {}, `deliveries: ${deliveries.length}`), h("ul", {}, deliveries)));
}

export async function refresh() {
  const answer = await get(`/alerts?limit=200&model=${encodeURIComponent(currentModel())}`);
  const groups = STATES.map((name) => {
    const items = answer.data.alerts.filter((a) => a.state === name);
    return h("section", { class: "alert-group", "data-state": name },
      h("h3", {}, `${name} (${items.length})`),
      items.length ? h("ul", { class: "alerts" }, items.map(alertItem)) : h("p", { class: "empty" }, "none"));
  });
  fill($("#alert-lists"), groups);
  return [answer];
}
