// Dialogs, notices and toasts shared by the pages.
import { $, fill, h } from "./dom.js";
import { ApiError, Offline } from "./api.js";

/** Ask before a consequential action; resolves true when confirmed. */
export function confirmAction(text) {
  const dialog = $("#confirm");
  fill($("#confirm-text"), text);
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Ask for the API key (once per session; again after a refusal). */
export function askKey(refused) {
  const dialog = $("#key-dialog");
  const input = $("#key-input");
  input.value = "";
  $("#key-hint").classList.toggle("error", refused);
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" ? input.value.trim() : null),
      { once: true },
    );
  });
}

/** A message for a failed action; a 401 says how to get a key. */
export function describeError(error) {
  if (error instanceof Offline) return `Not done: ${error.message}.`;
  if (error instanceof ApiError && error.status === 401) {
    return "The API refused the key (401). Use the MODELOPS_API_KEY the server runs with: make run prints it and keeps it in var/api_key.";
  }
  if (error instanceof ApiError) {
    const fields = error.problems.map((p) => `${p.field}: ${p.message}`).join("; ");
    return `${error.status} ${error.code || ""}: ${error.message}${fields ? ` (${fields})` : ""}`;
  }
  return String(error.message || error);
}

export function notice(text, kind = "info") {
  const el = $("#notice");
  el.className = `banner notice ${kind}`;
  fill(el, text, " ", h("button", { type: "button", class: "link", onclick: () => { el.hidden = true; } }, "dismiss"));
  el.hidden = false;
}

export function toast(text, kind = "info") {
  const el = h("div", { class: `toast ${kind}`, role: "alert" }, text);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), 10000);
}

export function progressBar(value, label) {
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: "100", value: String(value ?? 0) }),
    " ",
    label ?? `${value ?? 0}%`,
  );
}

/** Tell the page loop that an action changed something: refresh now. */
export const changes = new EventTarget();
export const changed = () => changes.dispatchEvent(new Event("changed"));
