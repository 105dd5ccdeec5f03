// Which model the dashboard shows: `?model=` in the URL (so a link or a reload keeps
// it), else the deployment's default model. Every model-scoped call goes through
// `modelPath`.
const params = () => new URLSearchParams(location.search);

export const scope = { defaultModel: "default" };

export function currentModel() {
  return params().get("model") || scope.defaultModel;
}

export function modelPath(suffix = "") {
  return `/models/${encodeURIComponent(currentModel())}${suffix}`;
}

export function chooseModel(name) {
  const url = new URL(location.href);
  if (name === scope.defaultModel) url.searchParams.delete("model");
  else url.searchParams.set("model", name);
  history.pushState(null, "", url);
}
