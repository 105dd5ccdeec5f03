// The dashboard's only way to the server: the public API. GET answers are kept in
// localStorage, so when the API cannot be reached the page shows the last data it
// had, with its time, and recovers by itself on the next successful call.

const CACHE = "modelops:cache:";
const KEY = "modelops:api-key";
const listeners = new Set();

export const connection = { online: true, lostAt: null };

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.details = error.details || {};
  }

  get problems() {
    return Array.isArray(this.details.problems) ? this.details.problems : [];
  }
}

export class Offline extends Error {}

export function onConnectionChange(listener) {
  listeners.add(listener);
}

function setOnline(online) {
  if (connection.online === online) return;
  connection.online = online;
  connection.lostAt = online ? null : Date.now();
  for (const listener of listeners) listener(connection);
}

async function parse(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return { error: { message: text.slice(0, 200) } };
  }
}

const GATEWAY = new Set([502, 504]);

async function call(method, path, { body, form, auth = false, key, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (auth && key) headers["X-API-Key"] = key;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    setOnline(false);
    throw new Offline(`the API cannot be reached (${error.message})`);
  }
  if (GATEWAY.has(response.status)) {
    setOnline(false);
    throw new Offline(`the API cannot be reached (HTTP ${response.status})`);
  }
  setOnline(true);
  if (raw && response.ok) return { data: null, response }; // a file: the caller reads it
  const data = await parse(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, response };
}

// Reads carry the session's key when there is one: an API that guards its reads
// (MODELOPS_READ_AUTH, or one reachable beyond loopback) answers 401 without it. Then
// the page asks for the key once; when the user declines, reads stop asking until
// an action is given a key.
let readKeyPrompt = null;
let readKeyDeclined = false;

export function askKeyForReads(askKey) {
  readKeyPrompt = askKey;
}

async function read(path) {
  for (let attempt = 0; ; attempt += 1) {
    const key = storedKey();
    try {
      return await call("GET", path, { auth: Boolean(key), key });
    } catch (error) {
      const retry = error instanceof ApiError && error.status === 401 && attempt === 0;
      if (!retry || !readKeyPrompt || readKeyDeclined) throw error;
      if (key) forgetKey();
      if (!(await ensureKey(readKeyPrompt, Boolean(key)))) {
        readKeyDeclined = true;
        throw error;
      }
    }
  }
}

/** GET `path`; when offline, the cached answer with `cachedAt` (or Offline). */
export async function get(path) {
  try {
    const { data } = await read(path);
    localStorage.setItem(CACHE + path, JSON.stringify({ at: Date.now(), data }));
    return { data, cachedAt: null };
  } catch (error) {
    if (!(error instanceof Offline)) throw error;
    const kept = localStorage.getItem(CACHE + path);
    if (!kept) throw error;
    const { at, data } = JSON.parse(kept);
    return { data, cachedAt: at };
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

let asking = null; // one key dialog at a time, whoever asks

/** The session's key, asking for it when there is none yet; null when not given. */
export async function ensureKey(askKey, refused = false) {
  let key = storedKey();
  if (!key) {
    asking = asking || Promise.resolve(askKey(refused)).finally(() => { asking = null; });
    key = await asking;
    if (key) {
      sessionStorage.setItem(KEY, key);
      readKeyDeclined = false;
    }
  }
  return key || null;
}

/**
 * A call that needs the API key: asks for it once (then keeps it for the session);
 * a refused key is forgotten and asked for again, once.
 */
async function keyed(method, path, options, askKey) {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const key = await ensureKey(askKey, attempt > 0);
    if (!key) throw new ApiError(401, { error: { message: "no API key given" } });
    try {
      return await call(method, path, { ...options, auth: true, key });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || attempt > 0) throw error;
      forgetKey();
    }
  }
  throw new Error("unreachable");
}

export async function send(method, path, options = {}, askKey) {
  return (await keyed(method, path, options, askKey)).data;
}

/**
 * Download `path` (a file the API keeps behind the key) as `filename`: fetched with
 * the key, then handed to the browser as a local object URL.
 */
export async function download(path, filename, askKey) {
  const { response } = await keyed("GET", path, { raw: true }, askKey);
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * POST a form with files behind the key, showing progress on `bar` (hidden again
 * at the end); a refused key is forgotten, so the next try asks again. Null when
 * no key was given.
 */
export async function uploadKeyed(path, formData, bar, askKey) {
  bar.hidden = false;
  bar.value = 0;
  try {
    if (!(await ensureKey(askKey))) return null;
    return await upload(path, formData, (pct) => { bar.value = pct; });
  } catch (error) {
    if (error.status === 401) forgetKey();
    throw error;
  } finally {
    bar.hidden = true;
  }
}

/** POST a file with upload progress (fetch cannot report it). */
function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("Accept", "application/json");
    const key = storedKey();
    if (key) request.setRequestHeader("X-API-Key", key);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(Math.round((100 * event.loaded) / event.total));
    });
    request.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(request.responseText || "null");
      } catch {
        data = { error: { message: request.responseText.slice(0, 200) } };
      }
      if (request.status >= 200 && request.status < 300) resolve(data);
      else reject(new ApiError(request.status, data));
    });
    request.addEventListener("error", () => {
      setOnline(false);
      reject(new Offline("the API cannot be reached"));
    });
    request.send(formData);
  });
}
