// Fills the status card from the public API; text only, never HTML from data.
const set = (id, text) => { document.getElementById(id).textContent = text; };

async function refresh() {
  const ready = await fetch("/readyz").then((r) => r.json()).catch(() => null);
  set("readiness", ready ? ready.status : "API unreachable");
  const response = await fetch("/model/status").catch(() => null);
  if (response && response.ok) {
    const model = await response.json();
    set("model-version", `${model.version} (generation ${model.generation})`);
    set("model-type", model.model_type);
    set("model-accuracy", model.accuracy.toFixed(3));
    set("model-f1", model.f1_score.toFixed(3));
    set("model-features", model.feature_names.join(", "));
  }
  document.getElementById("status").dataset.ready = "true";
}

refresh();
setInterval(refresh, 5000);
