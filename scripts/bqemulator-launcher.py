"""Start bqemulator with three fixes our machines and our tests need.

1. No DuckDB spatial extension. At start-up bqemulator runs `INSTALL spatial; LOAD spatial` so that
   GEOGRAPHY works. The extension is downloaded from DuckDB's extension host, which our machines
   and CI cannot reach, so the emulator dies before it serves anything. We use no GEOGRAPHY column,
   so the loader becomes a no-op.

2. One DuckDB user at a time. bqemulator serves REST on its asyncio event loop and gRPC (Storage
   Write/Read) on worker threads, all against ONE DuckDB connection, and serialises only writes
   within each side. When a REST query or DDL overlaps an AppendRows flush, the emulator stops
   answering every request for good (tests/tests/bqemulator_concurrency.rs reproduces it: six
   clients appending, querying and running DDL hang it within seconds). Here every REST request
   and every DuckDB-touching gRPC step takes one process-wide lock. The gRPC steps under the lock
   never wait for the event loop, so the loop blocking on the lock cannot deadlock; Python locks
   release the GIL while waiting, so DuckDB's own threads keep running. The cost is that the
   emulator handles one request at a time, which is what our tests need anyway.

3. No time-travel copy of a table per write. After every successful write (each AppendRows
   request, each DML, each load) bqemulator copies the WHOLE table into a snapshot table
   (`CREATE TABLE ... AS SELECT * FROM`, for `FOR SYSTEM_TIME AS OF`) and keeps it for
   `time_travel_retention_days` (7). With the consumer appending a batch every few hundred rows,
   memory and CPU grow with (appends x table size): the chaos soak (x30, ~1,100 trades/s) drove
   the emulator from 170 MB to 2.9 GB in 200 s and to 17 GB in 12 minutes, when the machine ran
   out of memory. Real BigQuery keeps time travel without such a cost, and nothing of ours reads
   `FOR SYSTEM_TIME AS OF`, so automatic snapshots are skipped; `CREATE SNAPSHOT TABLE` (a
   user's snapshot) still works, and the change event (query cache, materialized views) still
   fires.

Then it hands over to bqemulator's own command line (`start --rest-port ...`).

Usage: .venv/bq/bin/python scripts/bqemulator-launcher.py start --rest-port P --grpc-port G ...
"""

import functools
import sys
import threading

from bqemulator import server
from bqemulator.grpc_api import read_servicer, write_servicer
from bqemulator.storage import engine
from bqemulator.versioning import snapshots

_DUCKDB = threading.RLock()


def _skip_spatial(self) -> None:  # noqa: ARG001 - same signature as the method it replaces
    """No-op: the spatial extension cannot be downloaded offline and we need no GEOGRAPHY."""


engine.DuckDBEngine._load_spatial = _skip_spatial

_capture = snapshots.SnapshotManager.capture


def _capture_user_only(self, *args, kind="AUTO", **kwargs):
    """Fix 3: no automatic per-write snapshot; a user's `CREATE SNAPSHOT TABLE` still captures."""
    if kind == "AUTO":
        return None
    return _capture(self, *args, kind=kind, **kwargs)


snapshots.SnapshotManager.capture = _capture_user_only


def _locked(method):
    """`method`, run holding the process-wide DuckDB lock."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        with _DUCKDB:
            return method(*args, **kwargs)

    return run


def _locked_stream(method):
    """A server-streaming handler, holding the lock while it produces each response (not while
    its client reads them)."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        responses = iter(method(*args, **kwargs))
        while True:
            with _DUCKDB:
                try:
                    item = next(responses)
                except StopIteration:
                    return
            yield item

    return run


# Storage Write: the unary calls whole; AppendRows (bidirectional, it waits on the event loop for
# its next request) only around the steps that touch DuckDB.
W = write_servicer.BigQueryWriteHandler
for name in (
    "_handle_create_write_stream",
    "_handle_get_write_stream",
    "_handle_finalize_write_stream",
    "_handle_batch_commit_write_streams",
    "_handle_flush_rows",
    "_bind_stream_to_target",
    "_perform_append",
):
    setattr(W, name, _locked(getattr(W, name)))
_write_init = W.__init__


def _write_init_shared_lock(self, *args, **kwargs):
    _write_init(self, *args, **kwargs)
    self._write_lock = _DUCKDB  # its own writer lock becomes the process-wide one


W.__init__ = _write_init_shared_lock

# Storage Read: sessions whole, row streams one response at a time.
R = read_servicer.BigQueryReadHandler
for name in ("_handle_create_read_session", "_handle_split_read_stream"):
    setattr(R, name, _locked(getattr(R, name)))
R._handle_read_rows = _locked_stream(R._handle_read_rows)

_create_app = server.create_app


def _create_locked_app(context):
    """bqemulator's FastAPI app behind an ASGI wrapper that holds the lock per HTTP request."""
    app = _create_app(context)

    async def locked(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        # Blocks the event loop while a gRPC step holds the lock: those steps are short and never
        # need the loop. Reentrant, so requests interleaving on the loop thread do not block it.
        with _DUCKDB:
            await app(scope, receive, send)

    return locked


server.create_app = _create_locked_app

from bqemulator.cli import main  # noqa: E402 - must come after the patches

if __name__ == "__main__":
    sys.exit(main(prog_name="bqemulator"))
