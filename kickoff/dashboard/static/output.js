// A task's output on its page. With the server's output endpoint (issue 14:
// GET /v1/tasks/{id}/output with byte offsets, and its live stream) the whole output,
// followed while the task runs; on a server without it, the 4 KiB tail that the task's
// completion carries. The one place that knows the endpoint's shape.

import {ApiError, headers, missingEndpoint} from "./api.js";

const MAX_SHOWN = 2 * 1024 * 1024; // characters kept on the page; older ones are dropped

async function readChunk(id, offset, signal) {
  const response = await fetch(`/v1/tasks/${id}/output?offset=${offset}`, {
    headers: headers({"Accept": "text/plain, application/json"}),
    credentials: "same-origin", cache: "no-store", signal});
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    const body = type.startsWith("application/json") ? await response.json() : {};
    const error = body.error || {};
    throw new ApiError(response.status, error.code, error.message);
  }
  if (type.startsWith("application/json")) {
    const body = await response.json();
    const text = body.text ?? body.output ?? body.data ?? "";
    return {text, next: body.next_offset ?? body.end ?? offset + new TextEncoder().encode(text).length};
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  return {text: new TextDecoder().decode(bytes), next: offset + bytes.length};
}

export function followOutput(id, box, note) {
  let mode = "unknown"; // "endpoint" | "tail"
  let offset = 0;
  let reading = false;
  const abort = new AbortController();

  function show(text, replace) {
    const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.textContent = replace ? text : (box.textContent + text).slice(-MAX_SHOWN);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  async function readMore() {
    if (reading) return;
    reading = true;
    try {
      for (;;) {
        const chunk = await readChunk(id, offset, abort.signal);
        mode = "endpoint";
        offset = chunk.next;
        if (!chunk.text) break;
        show(chunk.text, false);
      }
    } catch (error) {
      if (missingEndpoint(error)) mode = "tail";
      else if (error.name !== "AbortError") note.textContent = error.message;
    } finally {
      reading = false;
    }
  }

  let timer = null;
  async function update(task) {
    if (mode !== "tail") await readMore();
    if (mode === "tail") {
      note.textContent = task.finished_at ? "(its last 4 KiB)" :
        "(the last 4 KiB appear when it ends: this server does not stream output)";
      show(task.output_tail || "", true);
      return;
    }
    note.textContent = task.finished_at ? "" : "(live)";
    // While it runs, output arrives without events: read on at a modest pace.
    clearTimeout(timer);
    if (!task.finished_at) timer = setTimeout(() => update(task), 1000);
  }

  return {
    update,
    stop() {
      clearTimeout(timer);
      abort.abort();
    },
  };
}
