#!/usr/bin/env python3
"""A minimal subscriber to the trade topic, written from docs/trade-topic.md alone.

It compiles the shipped contract (proto/proto/trade.proto) at start-up with grpcio-tools'
bundled protoc, creates its own subscription (ordering enabled, filtered to the symbols asked
for), decodes each message as a Trade, checks it, applies the documented de-duplication rule
when asked, prints one JSON line per trade (the proto's field names, decimals as strings, times
in microseconds) and deletes its subscription on exit.

    GCP_PROJECT=my-project python trade_subscriber.py --symbol BTCUSDT --limit 10

Against the Pub/Sub emulator, set PUBSUB_EMULATOR_HOST=127.0.0.1:8085 (the Python client reads
it and needs no credentials).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

# The contract, shipped in this repository; override with --proto-dir for a copy elsewhere.
DEFAULT_PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "proto"
SOURCES = ("stream", "backfill", "batch", "archive")
# Times before 2017-01-01 (before Binance) mean a unit or missing-field bug.
EARLIEST_TIME_MICROS = 1_483_228_800_000_000


def load_trade_class(proto_dir: Path = DEFAULT_PROTO_DIR):
    """Compiles trade.proto into a temporary directory and returns the generated Trade class."""
    from grpc_tools import protoc  # imported here so that --help works without it

    out = tempfile.mkdtemp(prefix="trade_proto_")
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"--python_out={out}", str(proto_dir / "trade.proto")]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on {proto_dir / 'trade.proto'}")
    sys.path.insert(0, out)
    try:
        return importlib.import_module("trade_pb2").Trade
    finally:
        sys.path.remove(out)


def is_plain_decimal(s: str) -> bool:
    whole, dot, frac = s.partition(".")
    return whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii()))


def check(trade, attributes) -> str | None:
    """The contract's checks; returns why the message breaks it, or None.

    Python's protobuf does not enforce proto2 `required` when parsing, so check it here.
    """
    missing = trade.FindInitializationErrors()
    if missing:
        return f"missing required fields: {', '.join(missing)}"
    if not trade.symbol or not all(c.isascii() and (c.isupper() or c.isdigit()) for c in trade.symbol):
        return f'field "symbol": {trade.symbol!r} is not an upper-case Binance symbol'
    if trade.trade_id < 0:
        return f'field "trade_id": {trade.trade_id} is negative'
    for field in ("price", "quantity"):
        if not is_plain_decimal(getattr(trade, field)):
            return f'field "{field}": {getattr(trade, field)!r} is not a plain decimal'
    for field in ("trade_time", "event_time", "receive_time"):
        if getattr(trade, field) < EARLIEST_TIME_MICROS:
            return f'field "{field}": {getattr(trade, field)} is not microseconds since the epoch'
    if trade.source not in SOURCES:
        return f'field "source": {trade.source!r} is not one of {", ".join(SOURCES)}'
    for name in ("symbol", "source"):
        if attributes.get(name) != getattr(trade, name):
            return f"attribute {name!r} is {attributes.get(name)!r} but the payload says {getattr(trade, name)!r}"
    return None


class Dedup:
    """The documented rule: a trade is identified by (symbol, trade_id); keep the first message
    carrying a pair, drop every later one whatever its source, message id or arrival order."""

    def __init__(self) -> None:
        self._seen: dict[str, set[int]] = {}

    def first_sighting(self, symbol: str, trade_id: int) -> bool:
        seen = self._seen.setdefault(symbol, set())
        if trade_id in seen:
            return False
        seen.add(trade_id)
        return True


def to_json(trade) -> str:
    """One line, the proto's field order and names; decimals stay strings."""
    return json.dumps(
        {
            "symbol": trade.symbol,
            "trade_id": trade.trade_id,
            "price": trade.price,
            "quantity": trade.quantity,
            "trade_time": trade.trade_time,
            "event_time": trade.event_time,
            "receive_time": trade.receive_time,
            "buyer_is_maker": trade.buyer_is_maker,
            "source": trade.source,
        },
        separators=(",", ":"),
    )


def symbol_filter(symbols: list[str]) -> str:
    return " OR ".join(f'attributes.symbol = "{s}"' for s in symbols)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", default=os.environ.get("GCP_PROJECT"), help="GCP project (env GCP_PROJECT)")
    p.add_argument("--topic", default=os.environ.get("TRADE_TOPIC", "binance-trades"), help="trade topic (env TRADE_TOPIC)")
    p.add_argument("--symbol", action="append", default=[], help="only this symbol (repeatable)")
    p.add_argument("--subscription", help="subscription name (default: a temporary one, deleted on exit)")
    p.add_argument("--limit", type=int, help="stop after this many trades")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--dedup", action="store_true", help="print each (symbol, trade_id) once")
    p.add_argument("--proto-dir", type=Path, default=DEFAULT_PROTO_DIR, help="where trade.proto is")
    args = p.parse_args(argv)
    if not args.project:
        p.error("--project or GCP_PROJECT is required")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from google.cloud import pubsub_v1

    trade_class = load_trade_class(args.proto_dir)
    subscriber = pubsub_v1.SubscriberClient()
    name = args.subscription or f"pysub-{os.getpid()}-{int(time.time() * 1000)}"
    path = subscriber.subscription_path(args.project, name)
    request = {
        "name": path,
        "topic": subscriber.topic_path(args.project, args.topic),
        "enable_message_ordering": True,
        "ack_deadline_seconds": 60,
    }
    if args.symbol:
        request["filter"] = symbol_filter(args.symbol)
    subscriber.create_subscription(request=request)
    print(f"pysub: created subscription {name} (filter: {request.get('filter', 'none')})", file=sys.stderr, flush=True)

    dedup = Dedup() if args.dedup else None
    lock = threading.Lock()
    done = threading.Event()
    printed = 0

    def on_message(message) -> None:
        nonlocal printed
        message.ack()
        with lock:
            if done.is_set():
                return
            try:
                trade = trade_class.FromString(message.data)
                reason = check(trade, dict(message.attributes))
            except Exception as e:  # DecodeError: not a Trade at all
                reason = f"payload of {len(message.data)} bytes is not a Trade: {e}"
            if reason:
                print(f"pysub: invalid message {message.message_id}: {reason}", file=sys.stderr, flush=True)
                return
            if args.symbol and trade.symbol not in args.symbol:
                # The filter applies server-side on Google Cloud; the emulator stores filters but
                # does not apply them, so check again here.
                return
            if dedup and not dedup.first_sighting(trade.symbol, trade.trade_id):
                return
            print(to_json(trade), flush=True)
            printed += 1
            if args.limit is not None and printed >= args.limit:
                done.set()

    future = subscriber.subscribe(path, callback=on_message)
    try:
        done.wait(args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        future.cancel()
        future.result()
        subscriber.delete_subscription(subscription=path)
        print(f"pysub: deleted subscription {name}; {printed} printed", file=sys.stderr, flush=True)
        subscriber.close()
    return 0 if args.limit is None or printed >= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
