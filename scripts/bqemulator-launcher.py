"""Start bqemulator without DuckDB's spatial extension.

Why: at start-up bqemulator runs `INSTALL spatial; LOAD spatial` so that GEOGRAPHY works. The
extension is downloaded from DuckDB's extension host, which our machines and CI cannot reach, so
the emulator dies before it serves anything. We use no GEOGRAPHY column, so we replace the loader
with a no-op and then hand over to bqemulator's own command line (`start --rest-port ...`).

Usage: .venv/bq/bin/python scripts/bqemulator-launcher.py start --rest-port P --grpc-port G ...
"""

import sys

from bqemulator.storage import engine


def _skip_spatial(self) -> None:  # noqa: ARG001 - same signature as the method it replaces
    """No-op: the spatial extension cannot be downloaded offline and we need no GEOGRAPHY."""


engine.DuckDBEngine._load_spatial = _skip_spatial

from bqemulator.cli import main  # noqa: E402 - must come after the patch

if __name__ == "__main__":
    sys.exit(main(prog_name="bqemulator"))
