// Talking to the server: JSON requests with the session's CSRF token in a header, and
// the server's event stream read over fetch (EventSource cannot send that header).

let csrf = null;
let onLoggedOut = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || "error";
  }
}

export function whenLoggedOut(callback) {
  onLoggedOut = callback;
}

// The session's CSRF token; null when there is no session (the cookie is HttpOnly: the
// page cannot read it, only ask the server whether it holds one).
export async function startSession() {
  const response = await fetch("/dashboard/session", {credentials: "same-origin", cache: "no-store"});
  if (!response.ok) throw new ApiError(response.status, "error", "cannot reach the server");
  csrf = (await response.json()).csrf;
  return csrf;
}

// What every request of the page carries: the session's CSRF token (see kickoff/dashboard/gate.py).
export function headers(extra = {}) {
  return {"Accept": "application/json", "X-Kickoff-CSRF": csrf || "", ...extra};
}

export async function request(path, {method = "GET", body, signal} = {}) {
  const init = {method, headers: headers(), credentials: "same-origin", cache: "no-store", signal};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("content-type") || "";
  const data = type.startsWith("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401) onLoggedOut();
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

export const get = (path, options) => request(path, options);
export const post = (path, body, options = {}) => request(path, {...options, method: "POST", body});

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Whether an answer means "this server has no such endpoint" (an older server, or a
// feature not built yet), rather than a failure.
export function missingEndpoint(error) {
  return error instanceof ApiError && (error.status === 404 || error.status === 405) &&
    /^no route|is not allowed on/.test(error.message);
}

// Read a text/event-stream response: call onEvent(data, type) for each event, onLive()
// once the server says the stream is live. Resolves when the stream ends.
async function readEvents(response, onEvent, onLive) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let data = "";
      let type = "message";
      for (const line of block.split("\n")) {
        if (line.startsWith("data: ")) data += line.slice(6);
        else if (line.startsWith("event: ")) type = line.slice(7);
        else if (line === ": live") onLive();
      }
      if (data) onEvent(JSON.parse(data), type);
    }
  }
}

// Follow a server-sent event stream for as long as `signal` allows, reconnecting with a
// back-off. A reconnect starts live again (no replay of what was missed: the caller
// refreshes its views on onLive instead, which costs one page, not the log's backlog).
export async function follow(path, {onEvent, onLive, onDown, signal}) {
  let wait = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, {headers: headers({"Accept": "text/event-stream"}),
        credentials: "same-origin", cache: "no-store", signal});
      if (response.status === 401) {
        onLoggedOut();
        return;
      }
      if (response.ok) {
        await readEvents(response, onEvent, () => {
          wait = 500;
          onLive();
        });
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    onDown();
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 10000);
  }
}
