// The task page at #/task/ID: fields, attempts, output (live while it runs), why, history.

import {ApiError, get, missingEndpoint, post} from "./api.js";
import {amounts, badge, clear, fields, h, seconds, tags, when} from "./dom.js";
import {followOutput} from "./output.js";
import {refresher} from "./refresh.js";
import {cancelButton} from "./tasks.js";

const KNOWN = ["id", "state", "command", "require", "want", "resources", "gpu_ids", "priority",
  "attempt", "max_attempts", "worker", "worker_name", "exit_code", "submitted_at", "started_at",
  "finished_at"];
const SHOWN_ELSEWHERE = new Set(["command", "output_tail"]);
const CANCELLABLE = new Set(["pending", "waiting", "running"]);

// Attempts from the history: each claim opens one, the event that ends it closes it.
function attempts(events) {
  const found = new Map();
  for (const e of events) {
    const n = e.data.attempt;
    if (e.type === "TaskClaimed") {
      found.set(n, {attempt: n, worker: e.worker_id, started: e.ts, ended: null, how: "running"});
    } else if (n !== undefined && found.has(n)) {
      const a = found.get(n);
      if (e.type === "TaskCompleted") {
        Object.assign(a, {ended: e.ts, how: e.data.timed_out ? "timed out" :
          `exit ${e.data.exit_code}`, duration: e.data.duration_s});
      } else if (e.type === "TaskCancelled") Object.assign(a, {ended: e.ts, how: "cancelled"});
      else if (e.type === "TaskLeaseExpired") Object.assign(a, {ended: e.ts, how: "worker lost"});
      else if (e.type === "TaskFailed") Object.assign(a, {ended: e.ts, how: e.data.reason});
    }
  }
  return [...found.values()];
}

function attemptsTable(list) {
  if (!list.length) return h("p", {class: "muted"}, "Not started yet.");
  return h("table", {class: "grid", "data-testid": "attempts"},
    h("thead", {}, h("tr", {}, ["attempt", "worker", "started", "ended", "how", "took"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.map((a) => h("tr", {}, h("td", {class: "num"}, a.attempt), h("td", {}, a.worker),
      h("td", {}, when(a.started)), h("td", {}, when(a.ended)), h("td", {}, a.how),
      h("td", {}, a.duration === undefined ? "" : seconds(a.duration))))));
}

function historyTable(events) {
  return h("table", {class: "grid", "data-testid": "history"},
    h("thead", {}, h("tr", {}, ["seq", "time", "event", "worker", "data"].map((t) => h("th", {}, t)))),
    h("tbody", {}, events.map((e) => {
      const data = {...e.data};
      delete data.task_id;
      return h("tr", {}, h("td", {class: "num"}, e.seq), h("td", {}, when(e.ts)),
        h("td", {}, h("strong", {}, e.type)), h("td", {}, e.worker_id || ""),
        h("td", {}, h("code", {class: "json"}, JSON.stringify(data))));
    })));
}

// `why` (GET /v1/tasks/ID/why, SPEC §11): the summary, then each kind of detail there is.
function grid(testid, heads, rows) {
  return h("table", {class: "grid", "data-testid": testid},
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

function who(name, id) {
  return !name || name === id ? id : `${name} (${id})`;
}

function taskLink(id) {
  return h("a", {href: `#/task/${id}`}, `#${id}`);
}

// The task's fields with what it asks for as `kickoff info` shows it: "gpu=2 mem=16G",
// and the GPUs its attempt holds as "1,3".
function readable(task) {
  const shown = {...task};
  if (Object.keys(task.resources || {}).length) shown.resources = amounts(task.resources);
  if ((task.gpu_ids || []).length) shown.gpu_ids = task.gpu_ids.join(",");
  return shown;
}

function whyView(answer) {
  const parts = [h("p", {class: "why-summary", "data-testid": "why-summary"}, answer.summary)];
  const workers = answer.workers || [];
  const counted = Object.keys(answer.asks || {}).length > 0;
  if (workers.length) {
    parts.push(grid("why-workers", ["worker that could run it", "hold", "running", "ahead", "took",
      ...(counted ? ["free"] : [])],
      workers.map((w) => [who(w.name, w.id), w.hold, w.running.map(taskLink), w.ahead, w.took_total,
        ...(counted ? [amounts(w.resources_free)] : [])])));
    const took = workers.flatMap((w) => w.took.map((t) => [who(w.name, w.id), taskLink(t.task_id),
      t.rule, t.detail, when(t.at)]));
    if (took.length) parts.push(grid("why-took", ["worker", "took", "rule", "why first", "at"], took));
  }
  if ((answer.nearest || []).length) {
    parts.push(grid("why-nearest", ["nearest worker", "lacks", "has of what it asks for"],
      answer.nearest.map((n) => [who(n.name, n.id), tags(n.lacks), amounts(n.has)])));
  }
  if ((answer.waiting_for || []).length) {
    parts.push(grid("why-dependencies", ["dependency", "kind", "state"],
      answer.waiting_for.map((d) => [taskLink(d.task_id), d.kind, badge(d.state)])));
  }
  if (answer.cap) {
    parts.push(h("p", {}, `group ${answer.cap.group}: at most ${answer.cap.max_running} running, now `,
      answer.cap.running.map((id) => [taskLink(id), " "])));
  }
  return parts;
}

export function taskPage(main, id, live) {
  const head = h("div", {class: "task-head"});
  const fieldBox = h("div");
  const commandBox = h("pre", {class: "command", "data-testid": "command"});
  const attemptBox = h("div");
  const outputBox = h("pre", {class: "output", "data-testid": "output"});
  const outputNote = h("span", {class: "muted"});
  const whySection = h("section", {hidden: true}, h("h2", {}, "Why"));
  const whyBox = h("div", {"data-testid": "why"});
  whySection.append(whyBox);
  const historyBox = h("div");
  clear(main, h("p", {}, h("a", {href: "#/"}, "← all tasks")), head,
    h("div", {class: "columns"},
      h("div", {class: "wide"},
        h("section", {}, h("h2", {}, "Command"), commandBox),
        h("section", {}, h("h2", {}, "Output ", outputNote), outputBox),
        whySection,
        h("section", {}, h("h2", {}, "Attempts"), attemptBox),
        h("section", {}, h("h2", {}, "History"), historyBox)),
      h("div", {class: "side"}, h("section", {}, h("h2", {}, "Fields"), fieldBox))));

  let task = null;
  const output = followOutput(id, outputBox, outputNote);
  let whyMissing = false;

  const load = refresher(async () => {
    try {
      task = await get(`/v1/tasks/${id}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        clear(head, h("h1", {}, `No task #${id}`));
        return;
      }
      throw error;
    }
    const history = await get(`/v1/tasks/${id}/events?heartbeats=0`);
    clear(head, h("h1", {}, `Task #${task.id} `, badge(task.state)),
      CANCELLABLE.has(task.state) ? cancelButton("cancel task", () => post(`/v1/tasks/${id}/cancel`), `task-${id}`) : "");
    commandBox.textContent = task.command;
    clear(fieldBox, fields(readable(task), KNOWN, SHOWN_ELSEWHERE));
    clear(attemptBox, attemptsTable(attempts(history.events)));
    clear(historyBox, historyTable(history.events));
    output.update(task);
    if (!whyMissing) {
      try {
        clear(whyBox, whyView(await get(`/v1/tasks/${id}/why`)));
        whySection.hidden = false;
      } catch (error) {
        if (missingEndpoint(error)) whyMissing = true;
        else clear(whyBox, h("p", {class: "error"}, error.message));
      }
    }
  }, 500);

  const off = live.on((event) => {
    // a pending task's why changes with what happens to the others (claims, workers)
    const waits = task !== null && (task.state === "pending" || task.state === "waiting");
    if (event === null || event.task_id === id || waits) load.schedule();
  });
  load.now();
  return {
    stop() {
      off();
      load.stop();
      output.stop();
    },
  };
}
