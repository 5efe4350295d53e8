// The overview at #/: counts per state, throughput, workers, the task list, live events.

import {get, query} from "./api.js";
import {throughputChart} from "./chart.js";
import {ago, amount, clear, fields, h, tags, when} from "./dom.js";
import {refresher} from "./refresh.js";
import {taskList} from "./tasks.js";

const STATE_ORDER = ["pending", "waiting", "running", "cancelling", "succeeded", "failed", "cancelled"];
const FINISHED = new Set(["TaskCompleted", "TaskCancelled", "TaskFailed"]);
const WORKER_KNOWN = ["id", "name", "host", "state", "tags", "slots", "running", "resources",
  "resources_free", "gpu_ids", "gpu_ids_free", "registered_at", "last_seen", "left_at"];
const MAX_EVENTS = 60;

function countCards(counts, onPick) {
  const names = [...STATE_ORDER.filter((s) => s in counts),
    ...Object.keys(counts).filter((s) => !STATE_ORDER.includes(s))];
  return names.map((name) => h("button", {class: "count", "data-state": name,
    "data-testid": `count-${name}`, title: `list ${name} tasks`, onclick: () => onPick(name)},
  h("span", {class: "n"}, Number(counts[name]).toLocaleString("en-US")), h("span", {}, name)));
}

function workerRow(worker, running) {
  const extra = Object.fromEntries(Object.entries(worker).filter(([k]) => !WORKER_KNOWN.includes(k)));
  const mine = running.filter((t) => t.worker === worker.id);
  return h("tr", {"data-id": worker.id},
    h("td", {}, h("strong", {}, worker.name), h("div", {class: "muted small"}, worker.host || "")),
    h("td", {}, tags(worker.tags)),
    h("td", {class: "num"}, `${worker.running ?? mine.length}/${worker.slots}`),
    h("td", {"data-testid": "worker-resources"}, resourceText(worker),
      Object.keys(extra).length ? fields(extra) : ""),
    h("td", {}, mine.length ? mine.map((t) => h("a", {class: "chip", href: `#/task/${t.id}`,
      title: t.command}, `#${t.id}`)) : h("span", {class: "muted"}, "idle")),
    h("td", {class: "muted"}, ago(worker.last_seen)));
}

// "gpu 2/4 free", "mem 48G/64G free", "GPUs 2,3 free": what the worker has free now (what
// it declared, less what its running tasks hold), and which devices.
function resourceText(worker) {
  const free = worker.resources_free || {};
  const parts = Object.entries(worker.resources || {}).map(([name, total]) =>
    h("span", {class: "tag", "data-testid": `free-${name}`}, name in free ?
      `${name} ${amount(free[name])}/${amount(total)} free` : `${name} ${amount(total)}`));
  if ((worker.gpu_ids || []).length && worker.gpu_ids_free) {
    const ids = worker.gpu_ids_free.join(",");
    parts.push(h("span", {class: "tag", "data-testid": "gpus-free", title: `of ${worker.gpu_ids.join(",")}`},
      ids ? `GPUs ${ids} free` : "no GPU free"));
  }
  return parts.length ? h("span", {class: "tags"}, parts) : "";
}

function eventLine(event) {
  const data = {...event.data};
  delete data.task_id;
  delete data.worker_id;
  return h("li", {"data-id": event.seq},
    h("span", {class: "muted"}, `#${event.seq}`), " ", when(event.ts), " ",
    h("strong", {}, event.type), " ",
    event.task_id ? h("a", {href: `#/task/${event.task_id}`}, `task ${event.task_id}`) : "", " ",
    event.worker_id ? h("span", {class: "muted"}, event.worker_id) : "", " ",
    h("code", {class: "json"}, JSON.stringify(data).slice(0, 200)));
}

export function overview(main, live, hash) {
  const countsBox = h("div", {class: "counts", "data-testid": "counts"});
  const chartBox = h("div", {class: "chart-box"}, h("p", {class: "muted"}, "…"));
  const workersBody = h("tbody");
  const workersNote = h("span", {class: "muted"});
  const eventsList = h("ol", {class: "events", "data-testid": "events"});
  const list = taskList(hash);
  clear(main,
    h("section", {class: "band"}, countsBox),
    h("div", {class: "columns"},
      h("div", {class: "wide"},
        h("section", {}, h("h2", {}, "Throughput"), chartBox),
        h("section", {}, h("h2", {}, "Tasks"), list.node)),
      h("div", {class: "side"},
        h("section", {}, h("h2", {}, "Workers ", workersNote),
          h("table", {class: "grid workers", "data-testid": "workers"},
            h("thead", {}, h("tr", {}, ["worker", "tags", "busy", "resources", "running", "seen"]
              .map((t) => h("th", {}, t)))), workersBody)),
        h("section", {}, h("h2", {}, "Live events"), eventsList))));

  list.onCounts = (counts) => clear(countsBox, countCards(counts, (state) => list.pick(state)));

  const workers = refresher(async () => {
    const [answer, running] = await Promise.all([get("/v1/workers"),
      get(`/v1/tasks${query({state: ["running", "cancelling"], limit: 1000, order: "desc"})}`)]);
    const slots = answer.workers.reduce((n, w) => n + w.slots, 0);
    const busy = answer.workers.reduce((n, w) => n + (w.running || 0), 0);
    workersNote.textContent = `${answer.workers.length} alive, ${busy}/${slots} slots busy`;
    clear(workersBody, answer.workers.length ? answer.workers.map((w) => workerRow(w, running.tasks)) :
      h("tr", {}, h("td", {colspan: 6, class: "muted"}, "No worker is connected.")));
  }, 2000);
  const chart = refresher(async () => {
    clear(chartBox, throughputChart(await get("/dashboard/api/throughput?step=10&span=900")));
  }, 5000);

  const pending = [];
  const events = refresher(async () => {
    const fresh = pending.splice(0).slice(-MAX_EVENTS).reverse().map(eventLine);
    eventsList.prepend(...fresh);
    while (eventsList.childElementCount > MAX_EVENTS) eventsList.lastElementChild.remove();
  }, 300);

  const off = live.on((event) => {
    if (event === null) { // (re)connected: everything may have changed
      list.refresh.now();
      workers.now();
      chart.now();
      return;
    }
    pending.push(event);
    if (pending.length > MAX_EVENTS * 4) pending.splice(0, pending.length - MAX_EVENTS);
    events.schedule();
    if (event.task_id) list.refresh.schedule();
    if (event.worker_id) workers.schedule();
    if (FINISHED.has(event.type)) chart.schedule();
  });
  list.refresh.now();
  workers.now();
  chart.now();
  return {
    stop() {
      off();
      for (const r of [list.refresh, workers, chart, events]) r.stop();
      list.stop();
    },
  };
}
