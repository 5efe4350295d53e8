// The dashboard's entry point: the session, the one event stream every view listens to,
// and the routes (#/ the overview, #/task/ID a task).

import {follow, post, startSession, whenLoggedOut} from "./api.js";
import {byId, clear, h} from "./dom.js";
import {overview} from "./overview.js";
import {taskPage} from "./task.js";

const listeners = new Set();
let view = null; // {stop()} of the view on screen
let stream = null;

// Views call live.on(fn) for each event and live.onLive(fn) when the stream (re)starts.
export const live = {
  on(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};

function setLive(state) {
  const badge = byId("live");
  badge.className = `live ${state}`;
  badge.textContent = {on: "live", off: "reconnecting…"}[state];
}

// Resolves once the stream is live (or after a while without it: the page still shows
// what it can). Views load after it, so that no event between their first load and the
// stream's start is missed, and that first load is the only one.
function startStream() {
  stream = new AbortController();
  let connected = false;
  return new Promise((ready) => {
    setTimeout(ready, 3000);
    follow("/v1/events/stream", {
      signal: stream.signal,
      onEvent: (event) => listeners.forEach((fn) => fn(event)),
      onLive: () => {
        setLive("on");
        if (connected) listeners.forEach((fn) => fn(null)); // null: reconnected, refresh all
        connected = true;
        ready();
      },
      onDown: () => setLive("off"),
    });
  });
}

function route() {
  if (view) view.stop();
  const main = byId("app");
  const hash = location.hash || "#/";
  const task = hash.match(/^#\/task\/(\d+)$/);
  view = task ? taskPage(main, Number(task[1]), live) : overview(main, live, hash);
}

function showLogin() {
  if (stream) stream.abort();
  if (view) view.stop();
  view = null;
  byId("logout").hidden = true;
  byId("live").hidden = true;
  clear(byId("app"), h("section", {class: "notice", "data-testid": "login"},
    h("h1", {}, "Log in to the kickoff dashboard"),
    h("p", {}, "On a machine that has the server's token, run"),
    h("pre", {}, "kickoff dashboard --server HOST:PORT"),
    h("p", {}, "and open the link it prints. A link works once, within a minute; the session " +
      "lasts until it is unused for 8 hours, or the server's token changes.")));
}

async function main() {
  whenLoggedOut(showLogin);
  let csrf;
  try {
    csrf = await startSession();
  } catch (error) {
    clear(byId("app"), h("p", {class: "error"}, `The server did not answer: ${error.message}`));
    return;
  }
  if (!csrf) {
    showLogin();
    return;
  }
  const logout = byId("logout");
  logout.hidden = false;
  logout.addEventListener("click", async () => {
    await post("/dashboard/logout").catch(() => {});
    showLogin();
  });
  await startStream();
  window.addEventListener("hashchange", route);
  route();
}

main();
