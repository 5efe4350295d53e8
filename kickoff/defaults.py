"""Every default and limit in one place.

Constants only, nothing imported: pure code (events/, state/) may use them.
"""

from __future__ import annotations

PORT = 3355
HOST = "127.0.0.1"
SERVER = f"{HOST}:{PORT}"

HEARTBEAT_TIMEOUT_S = 30.0
MIN_HEARTBEAT_TIMEOUT_S = 0.05
HEARTBEAT_INTERVAL_S = 5.0  # the worker's; the server suggests timeout / 3 capped at this
CLAIM_WAIT_S = 30.0  # longest a long-poll claim is held open
IDLE_MARK_S = 60.0  # an idle worker's heartbeat is recorded at most this often (decide.py)
CANCEL_GRACE_S = 5.0  # SIGTERM -> SIGKILL
SHUTDOWN_GRACE_S = 5  # a stopping server waits this long for open requests
TOKEN_RELOAD_S = 1.0  # a changed token file is read again within this
CLIENT_TIMEOUT_S = 30.0  # the Python client's (and so the CLI's) wait for an answer
MAX_ATTEMPTS = 3
SLOTS = 1

MAX_COMMAND_BYTES = 64 * 1024
MAX_CWD_BYTES = 4096  # a task's working directory (Linux's PATH_MAX)
MAX_ENV_VARS = 256  # a task's --env/--env-pass variables
MAX_ENV_NAME_CHARS = 256
MAX_ENV_BYTES = 64 * 1024  # all of a task's names and values, in UTF-8
MAX_TAG_CHARS = 64
MAX_TASK_TAGS = 32  # each of require and want
MAX_WORKER_TAGS = 256
MAX_BATCH = 10_000
MAX_BODY_BYTES = 64 * 1024 * 1024  # a submit: a batch must also fit here (the CLI splits)
MAX_SMALL_BODY_BYTES = 1024 * 1024  # every other request body
MAX_PRIORITY = 1_000_000
MIN_PRIORITY = -MAX_PRIORITY
MAX_ATTEMPTS_LIMIT = 1000
MIN_TIMEOUT_S = 0.001
MAX_TIMEOUT_S = 365 * 24 * 3600.0
TASK_ID_BITS = 40  # the matcher packs ids into its heap keys with this many bits
MAX_TASK_ID = (1 << TASK_ID_BITS) - 1  # task ids and seqs in paths and queries
MAX_NAME_CHARS = 128
MAX_SLOTS = 1024
MAX_IDEMPOTENCY_KEY_CHARS = 256
MAX_DEPENDENCIES = 1000  # ids in each of a task's after and after_any
MAX_RETRIES = 100
MAX_RETRY_DELAY_S = 7 * 24 * 3600.0
MAX_RETRY_CODES = 64
MAX_GROUP_RUNNING = 1_000_000
MAX_GROUP_NAME_CHARS = MAX_TAG_CHARS  # group names use the tag grammar
MAX_ARRAY_INDEX = 1_000_000_000
MAX_ARRAY_TASKS = 100_000  # tasks one `new --array` makes
MAX_RESOURCES = 32  # resource names per task or worker (SPEC §10)
MAX_RESOURCE_NAME_CHARS = 64
MAX_RESOURCE_AMOUNT = 1 << 60  # 1024P: any real amount, and a sum of 32 fits SQLite's int64
MAX_GPUS = 256  # devices one worker hands out (`gpu`)
RESERVE_AFTER_PASSES = 3  # a task that fits a worker's totals is passed over this often at
# most before the workers it fits keep its resources for it (state/matcher.py, README)
RETRY_CHECK_S = 0.1  # how often the server looks for delayed retries that are due
OUTPUT_TAIL_BYTES = 4096
# Task output on the server (kickoff/service/output.py, SPEC §9)
OUTPUT_CAP_BYTES = 64 * 1024 * 1024  # kept per attempt (`kickoff server --output-cap`)
OUTPUT_BUDGET_BYTES = 10 * 1024**3  # all output; past it the oldest tasks' goes first
OUTPUT_CHUNK_BYTES = 1024 * 1024  # at most one request's worth (a worker sends one at a time)
OUTPUT_READ_BYTES = 1024 * 1024  # GET .../output answers this much unless asked for less
OUTPUT_INLINE_BYTES = 64 * 1024  # output left at an attempt's end that rides in its report
OUTPUT_FLUSH_S = 0.25  # a worker sends what its tasks wrote this often (nothing if nothing)
MAX_PAGE = 10_000
DEFAULT_PAGE = 50
DEFAULT_EVENTS_PAGE = 1000

# HTTP connections (kickoff/api/protocol.py): bounded before the token is looked at
MAX_HEAD_BYTES = 16 * 1024  # request line and headers, as h11 and Node.js cap them
MAX_HEADERS = 100  # as Apache's LimitRequestFields
KEEP_ALIVE_S = 5  # a connection that sends nothing is closed (also before its first request)
HEAD_TIMEOUT_S = 10.0  # from the first byte of a request head to its end
BODY_TIMEOUT_S = 10.0  # a body's grace, extended by one second per MIN_BODY_RATE bytes
MIN_BODY_RATE = 16 * 1024  # bytes/s
MAX_CONNECTIONS = 10_000  # also at most the descriptor limit minus FD_RESERVE
LISTEN_BACKLOG = 2048  # connections the kernel queues before the server accepts them
FD_RESERVE = 64  # descriptors kept for the database, its WAL, logs, the listening socket
SUBSCRIBER_ROWS = 4096  # unread live rows kept per event-stream reader; past that it reads the log
STREAM_KEEP_ALIVE_S = 15.0  # an idle event stream sends a comment this often

# The web dashboard (kickoff/dashboard/)
LOGIN_CODE_S = 60.0  # a `kickoff dashboard` login link works once, within this
MAX_LOGIN_CODES = 64  # unused login codes kept at once (the oldest goes first)
SESSION_IDLE_S = 8 * 3600.0  # a dashboard session unused this long has ended
SESSION_MAX_S = 7 * 24 * 3600.0  # and any session after this long
MAX_SESSIONS = 256  # dashboard sessions kept at once (the least recently used goes first)
SEARCH_SCAN_ROWS = 20_000  # tasks one text or tag search request looks at, at most
THROUGHPUT_WINDOW_S = 3600  # the dashboard's throughput chart covers this much time
THROUGHPUT_SEED_EVENTS = 200_000  # log rows read, at most, to fill the chart's past

# The worker (kickoff/worker/)
WORKER_CLAIM_WAIT_S = 25.0  # its long-poll claim (the server holds one up to CLAIM_WAIT_S)
CLAIM_SLACK_S = 15.0  # added to a long-poll's HTTP timeout
MIN_HEARTBEAT_INTERVAL_S = 0.05  # a server's suggested interval is kept within these
MAX_HEARTBEAT_INTERVAL_S = 60.0
LEASE_MARGIN_S = 1.0  # a worker's lease ends this much (at most T/10) before the server's
TAGS_POLL_S = 1.0  # a --tags-file is looked at this often
PRUNE_EVERY_S = 10.0  # the log directory is pruned this often
KEEP_LOGS = 10_000  # task log files kept per server in the log directory (--keep-logs)
LOG_SPARES = 8  # unnamed log files a worker keeps ready
ABORT_DEADLINE_S = 10.0  # after a second Ctrl-C: time left to report and deregister
# Every report delivered, the server still unreachable: how long to keep trying to say
# goodbye. Not forever (a `systemctl stop` would hang): the server counts it lost anyway.
DEREGISTER_WAIT_S = 5.0
BACKOFF_FIRST_S = 0.1  # a request the server cannot take is tried again after this,
BACKOFF_MAX_S = 5.0  # doubling up to this (or the heartbeat interval, if shorter)
WARN_EVERY_S = 30.0  # while a request keeps failing, the worker says so this often

LEASE_TIMEOUT_S = 3.0  # a shared PostgreSQL database's leader lease: a standby takes over
# once it lapses (renewed every third of it); --lease-timeout
