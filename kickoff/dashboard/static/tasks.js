// The task list: filters (state, group, tag, text), newest first, keyset paging through
// any number of tasks with the API's `before` cursor, cancel from the row.

import {ApiError, get, post, query} from "./api.js";
import {ago, amount, badge, clear, h, seconds, tags} from "./dom.js";
import {refresher} from "./refresh.js";

const PAGE = 50;
const LIVE = new Set(["pending", "waiting", "running", "cancelling"]);
// A text or tag search reads a bounded window of tasks per request (the server's
// SEARCH_SCAN_ROWS); to fill a page it goes on for at most this many windows, then asks.
const MAX_WINDOWS = 10;
const TYPING_MS = 250;

// Cancel in two clicks (a stray click never cancels anything). The views redraw on
// events, so a button's first click is remembered by `key`, not by the button itself.
const armed = new Map(); // key -> when the first click expires (ms)
const ARMED_MS = 4000;

export function cancelButton(label, action, key) {
  const isArmed = () => (armed.get(key) || 0) > Date.now();
  const button = h("button", {class: isArmed() ? "danger small armed" : "danger small"},
    isArmed() ? "really?" : label);
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    event.stopPropagation();
    if (!isArmed()) {
      armed.set(key, Date.now() + ARMED_MS);
      button.textContent = "really?";
      button.classList.add("armed");
      setTimeout(() => {
        if (button.isConnected && !isArmed()) {
          button.textContent = label;
          button.classList.remove("armed");
        }
      }, ARMED_MS + 50);
      return;
    }
    armed.delete(key);
    button.disabled = true;
    button.textContent = "cancelling…";
    try {
      await action();
      button.textContent = "asked";
    } catch (error) {
      button.textContent = error.message;
    }
  });
  return button;
}

// What a task asks for ("gpu=2", "mem=16G") and the GPUs its attempt holds ("GPUs 1,3").
function asks(task) {
  const parts = Object.entries(task.resources || {}).map(([name, n]) => `${name}=${amount(n)}`);
  if ((task.gpu_ids || []).length) parts.push(`GPUs ${task.gpu_ids.join(",")}`);
  return parts.length ? h("span", {class: "asks", title: "resources", "data-testid": "asks"},
    tags(parts)) : "";
}

function row(task, showGroup) {
  return h("tr", {"data-id": task.id, "data-state": task.state},
    h("td", {class: "num"}, h("a", {href: `#/task/${task.id}`}, `#${task.id}`)),
    h("td", {}, badge(task.state)),
    h("td", {class: "command"}, h("a", {href: `#/task/${task.id}`, title: task.command},
      h("code", {}, task.command))),
    h("td", {}, tags(task.require), task.want && task.want.length ?
      h("span", {class: "want", title: "wanted"}, tags(task.want)) : "", asks(task)),
    showGroup ? h("td", {}, task.group || "") : null,
    h("td", {class: "nowrap"}, task.worker_name || task.worker || ""),
    h("td", {class: "num"}, task.exit_code ?? ""),
    h("td", {class: "muted nowrap"}, task.finished_at ? `${seconds(task.duration_s)}, ${ago(task.finished_at)}` :
      task.started_at ? `started ${ago(task.started_at)}` : ago(task.submitted_at)),
    h("td", {}, LIVE.has(task.state) && task.state !== "cancelling" ?
      cancelButton("cancel", () => post(`/v1/tasks/${task.id}/cancel`), `task-${task.id}`) : ""));
}

function parseHash(hash) {
  const params = new URLSearchParams(hash.split("?")[1] || "");
  return {state: params.get("state") || "all", group: params.get("group") || "",
    tag: params.get("tag") || "", q: params.get("q") || ""};
}

function writeHash(filters) {
  const params = query({state: filters.state === "all" ? "" : filters.state, group: filters.group,
    tag: filters.tag, q: filters.q});
  history.replaceState(null, "", `#/${params}`);
}

export function taskList(hash) {
  const filters = parseHash(hash);
  let cursors = []; // `before` of each page shown so far; the last is this page's
  let hasGroups = Boolean(filters.group);
  let inflight = null;
  const body = h("tbody", {"data-testid": "tasks"});
  const head = h("thead");
  const status = h("span", {class: "muted", "data-testid": "list-status"});
  const older = h("button", {disabled: true}, "older →");
  const newer = h("button", {disabled: true}, "← newer");
  const stateSelect = h("select", {name: "state", "aria-label": "state"},
    ["all", "live", "pending", "waiting", "running", "cancelling", "succeeded", "failed", "cancelled"]
      .map((s) => h("option", {value: s, selected: s === filters.state}, s)));
  const groupInput = h("input", {name: "group", placeholder: "group", value: filters.group,
    autocomplete: "off", hidden: !hasGroups});
  const tagInput = h("input", {name: "tag", placeholder: "tag", value: filters.tag, autocomplete: "off"});
  const textInput = h("input", {name: "q", type: "search", placeholder: "command contains…",
    value: filters.q, autocomplete: "off", spellcheck: "false"});
  const jump = h("input", {name: "id", placeholder: "go to #", inputmode: "numeric", class: "narrow"});
  const groupCancel = h("span", {"data-testid": "group-cancel"});
  const api = {node: null, onCounts: () => {}, refresh: null, pick, stop};

  function setHead() {
    clear(head, h("tr", {}, ["id", "state", "command", "require / want", hasGroups ? "group" : null,
      "worker", "exit", "when", ""].filter((t) => t !== null).map((t) => h("th", {}, t))));
  }

  function params(before) {
    return {order: "desc", limit: PAGE, before: before || "",
      state: filters.state === "live" ? "" : filters.state, group: filters.group, tag: filters.tag,
      q: filters.q};
  }

  // One page: a plain listing in one request; a search goes on window by window until
  // the page is full, the end is reached, or MAX_WINDOWS windows were read.
  async function fetchPage(before, signal) {
    const searching = Boolean(filters.q || filters.tag);
    let found = [];
    let cursor = before;
    let answer;
    for (let i = 0; i < (searching ? MAX_WINDOWS : 1); i++) {
      answer = await get(`/v1/tasks${query({...params(cursor), limit: PAGE - found.length})}`, {signal});
      found = found.concat(answer.tasks);
      cursor = answer.next_before;
      if (!cursor || found.length >= PAGE) break;
    }
    return {tasks: found, next: cursor, counts: answer.counts,
      searchedTo: searching && found.length < PAGE ? answer.searched_to : null};
  }

  async function load() {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const before = cursors[cursors.length - 1] || null;
    let page;
    try {
      page = await fetchPage(before, inflight.signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = error instanceof ApiError ? error.message : "the server did not answer";
      throw error;
    }
    api.onCounts(page.counts);
    if (!hasGroups && page.tasks.some((t) => "group" in t)) {
      hasGroups = true;
      groupInput.hidden = false;
    }
    setHead();
    clear(body, page.tasks.length ? page.tasks.map((t) => row(t, hasGroups)) :
      h("tr", {}, h("td", {colspan: 9, class: "muted"}, "No task matches.")));
    older.disabled = !page.next;
    older.onclick = () => {
      cursors = [...cursors, page.next];
      api.refresh.now();
    };
    newer.disabled = cursors.length === 0;
    const shown = page.tasks.length ? `#${page.tasks[0].id} … #${page.tasks[page.tasks.length - 1].id}` : "";
    status.textContent = page.searchedTo ? `${shown} — searched down to #${page.searchedTo}; ` +
      "“older” searches further" : shown;
    clear(groupCancel, filters.group && hasGroups ? cancelButton(`cancel group ${filters.group}`,
      () => post(`/v1/groups/${encodeURIComponent(filters.group)}/cancel`), `group-${filters.group}`) : "");
  }

  api.refresh = refresher(load, 1000);
  newer.addEventListener("click", () => {
    cursors = cursors.slice(0, -1);
    api.refresh.now();
  });

  let typing = null;
  function changed() {
    filters.state = stateSelect.value;
    filters.group = groupInput.value.trim();
    filters.tag = tagInput.value.trim();
    filters.q = textInput.value;
    cursors = [];
    writeHash(filters);
    clearTimeout(typing);
    typing = setTimeout(() => api.refresh.now(), TYPING_MS);
  }
  stateSelect.addEventListener("change", changed);
  for (const input of [groupInput, tagInput, textInput]) input.addEventListener("input", changed);
  jump.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && /^\d+$/.test(jump.value.trim())) location.hash = `#/task/${jump.value.trim()}`;
  });

  function pick(state) {
    stateSelect.value = state;
    changed();
  }

  function stop() {
    clearTimeout(typing);
    if (inflight) inflight.abort();
  }

  setHead();
  api.node = h("div", {class: "tasklist"},
    h("div", {class: "filters"}, stateSelect, groupInput, tagInput, textInput, jump, groupCancel),
    h("table", {class: "grid tasks"}, head, body),
    h("div", {class: "pager"}, newer, status, older));
  return api;
}
