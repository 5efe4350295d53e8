// Refreshing a view when events say something changed: at most once per `every_ms`,
// never two requests of the same view at once, nothing while nothing happens.

export function refresher(load, every_ms) {
  let last = 0;
  let timer = null;
  let running = false;
  let again = false;
  let stopped = false;

  async function run() {
    timer = null;
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    last = Date.now();
    try {
      await load();
    } catch (error) {
      console.warn("refresh failed:", error.message);
    } finally {
      running = false;
      if (again && !stopped) {
        again = false;
        schedule();
      }
    }
  }

  function schedule() {
    if (timer !== null || stopped) return;
    timer = setTimeout(run, Math.max(0, last + every_ms - Date.now()));
  }

  return {
    schedule,
    now: run,
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
