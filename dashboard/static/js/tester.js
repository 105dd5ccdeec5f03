// Try it: a form built from the champion's input schema, with example values, and a
// raw JSON editor; shows the answer, its status and latency, and field errors.
import { ApiError } from "./api.js";
import { $, fill, h } from "./dom.js";
import { modelPath } from "./scope.js";

let schemaKey = null;

function example(spec) {
  if (spec.type === "category") return (spec.categories || [""])[0];
  if (spec.min !== null && spec.max !== null) {
    const middle = (spec.min + spec.max) / 2;
    return Math.abs(middle) >= 10 ? Math.round(middle) : Number(middle.toFixed(2));
  }
  return 0;
}

function field(spec) {
  const id = `try-field-${schemaKey.indexOf(spec.name) - 1}`;
  const control = spec.type === "category"
    ? h("select", { id, name: spec.name }, (spec.categories || []).map((c) => h("option", { value: c }, c)))
    : h("input", { id, name: spec.name, type: "text", inputmode: "decimal", value: String(example(spec)) });
  const range = spec.type === "number" && spec.min !== null ? ` (seen ${spec.min} to ${spec.max})` : "";
  return h("div", { class: "field", "data-field": spec.name }, h("label", { for: id }, spec.name, h("small", {}, range)), control);
}

function formBody(schema) {
  const features = {};
  for (const spec of schema) {
    const raw = document.getElementById(`try-field-${schemaKey.indexOf(spec.name) - 1}`).value;
    const number = Number(raw);
    features[spec.name] = spec.type === "number" && raw.trim() !== "" && !Number.isNaN(number) ? number : raw;
  }
  return { features };
}

async function predict(body) {
  // A model's first answer in an API process includes loading it: say that it was sent.
  fill($("#try-status"), "sending…");
  $("#try-status").className = "";
  const started = performance.now();
  let status = 0;
  let data = null;
  try {
    const response = await fetch(modelPath("/predict"), {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body,
    });
    status = response.status;
    const text = await response.text();
    try { data = JSON.parse(text); } catch { data = text; }
  } catch (error) {
    data = `the API cannot be reached: ${error.message}`;
  }
  const latency = performance.now() - started;
  fill($("#try-status"), status ? `HTTP ${status}` : "no answer");
  $("#try-status").className = status === 200 ? "ok" : "error";
  fill($("#try-latency"), `${latency.toFixed(1)} ms`);
  fill($("#try-response"), typeof data === "string" ? data : JSON.stringify(data, null, 2));
  const problems = status >= 400 && data && data.error ? new ApiError(status, data).problems : [];
  fill($("#try-problems"), problems.map((p) => h("li", { "data-field": p.field || "" }, h("strong", {}, p.field || "body"), `: ${p.message} (${p.code})`)));
  document.querySelectorAll("#try-fields .field").forEach((el) => {
    el.classList.toggle("invalid", problems.some((p) => p.field === el.dataset.field || p.field === `features.${el.dataset.field}`));
  });
}

export async function refresh(state) {
  const model = state.model;
  if (!model) return [];
  const key = [model.name, ...model.input_schema.map((s) => s.name)];
  if (JSON.stringify(key) === JSON.stringify(schemaKey)) return [];
  schemaKey = key;
  fill($("#try-path"), `POST ${modelPath("/predict")}`);
  fill($("#try-fields"), model.input_schema.map(field));
  const example_ = Object.fromEntries(model.input_schema.map((s) => [s.name, example(s)]));
  $("#try-json").value = JSON.stringify({ features: example_ }, null, 2);
  return [];
}

export function setup(state) {
  $("#try-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.model) predict(JSON.stringify(formBody(state.model.input_schema)));
  });
  $("#try-send-json").addEventListener("click", () => predict($("#try-json").value));
}
