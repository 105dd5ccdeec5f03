// Building the page from data without ever parsing data as HTML: every value becomes
// a text node or an attribute, so "<img src=x onerror=...>" shows as those characters.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector) => document.querySelector(selector);

// A name like "Pipeline/RandomForestRegressor" may wrap after each slash (a <wbr>),
// so that a narrow card breaks it there rather than mid-word or past its edge.
export function breakAfterSlashes(text) {
  const parts = String(text).split("/");
  return parts.flatMap((part, i) => (i < parts.length - 1 ? [`${part}/`, h("wbr")] : [part]));
}

export function safeUrl(url) {
  // Only http(s) and same-site paths become links: never javascript: or data:.
  if (typeof url !== "string") return null;
  return /^(https?:\/\/|\/)/.test(url) ? url : null;
}

export function fmtNumber(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function fmtPercent(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return `${(100 * value).toFixed(digits)}%`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? String(iso) : at.toLocaleString();
}

export function fmtClock(ms) {
  return new Date(ms).toLocaleTimeString();
}
