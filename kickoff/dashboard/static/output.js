// A task's output on its page. With the server's output endpoint (issue 14:
// GET /v1/tasks/{id}/output with byte offsets, and its live stream with follow=1) the
// whole output, streamed while the task runs; on a server without it, the 4 KiB tail
// that the task's completion carries. The one place that knows the endpoint's shape.

import {ApiError, headers, missingEndpoint} from "./api.js";

const MAX_SHOWN = 2 * 1024 * 1024; // characters kept on the page; older ones are dropped

async function readChunk(id, offset, signal) {
  const response = await fetch(`/v1/tasks/${id}/output?offset=${offset}`, {
    headers: headers({"Accept": "application/octet-stream, application/json"}),
    credentials: "same-origin", cache: "no-store", signal});
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    const body = type.startsWith("application/json") ? await response.json() : {};
    const error = body.error || {};
    throw new ApiError(response.status, error.code, error.message);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const number = (name) => Number(response.headers.get(name) || 0);
  return {
    bytes, next: offset + bytes.length,
    total: number("x-kickoff-total"), size: number("x-kickoff-size"),
    cap: number("x-kickoff-cap"), attempt: number("x-kickoff-attempt"),
  };
}

export function followOutput(id, box, note) {
  let mode = "unknown"; // "endpoint" | "tail"
  let offset = 0;
  let attempt = null;
  let kept = {total: 0, size: 0, cap: 0};
  let reading = false;
  let decoder = new TextDecoder(); // streaming: a character split across reads stays whole
  const abort = new AbortController();

  function show(text, replace) {
    const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.textContent = replace ? text : (box.textContent + text).slice(-MAX_SHOWN);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  // While the attempt runs: its output as it arrives, from the server's live stream
  // (`follow=1`, a chunked answer that ends with the attempt). One at a time, and never
  // beside readMore: both move `offset`.
  let streaming = false;
  async function stream() {
    if (streaming || reading || attempt === null) return;
    streaming = true;
    try {
      const response = await fetch(
        `/v1/tasks/${id}/output?attempt=${attempt}&offset=${offset}&follow=1`, {
          headers: headers({"Accept": "application/octet-stream, application/json"}),
          credentials: "same-origin", cache: "no-store", signal: abort.signal});
      if (!response.ok || !response.body) return;
      const reader = response.body.getReader();
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        offset += value.length;
        show(decoder.decode(value, {stream: true}), false);
      }
    } catch (error) {
      if (error.name !== "AbortError") note.textContent = error.message;
    } finally {
      streaming = false;
    }
  }

  async function readMore() {
    if (reading || streaming) return;
    reading = true;
    try {
      for (;;) {
        const chunk = await readChunk(id, offset, abort.signal);
        if (attempt !== null && chunk.attempt !== attempt) { // a new attempt: start over
          attempt = chunk.attempt;
          offset = 0;
          decoder = new TextDecoder();
          show("", true);
          continue;
        }
        attempt = chunk.attempt;
        mode = "endpoint";
        offset = chunk.next;
        kept = chunk;
        if (!chunk.bytes.length) break;
        show(decoder.decode(chunk.bytes, {stream: true}), false);
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
    if (mode === "tail" || (task.finished_at && kept.total === 0 && task.output_tail)) {
      // a server without the output endpoint, or a task whose worker sent none
      note.textContent = task.finished_at ? "(its last 4 KiB)" :
        "(the last 4 KiB appear when it ends: this server does not stream output)";
      show(task.output_tail || "", true);
      return;
    }
    const dropped = kept.total - kept.size;
    const capped = dropped > 0 ?
      ` (only the first ${kept.cap} bytes are kept on the server: ${dropped} more not shown)` : "";
    note.textContent = (task.finished_at ? "" : "(live)") + capped;
    if (!task.finished_at) stream(); // not awaited: it lasts as long as the attempt
    // Output arrives without events, and a stream ends with its attempt (a retry starts
    // another): look again at a modest pace while the task runs.
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
