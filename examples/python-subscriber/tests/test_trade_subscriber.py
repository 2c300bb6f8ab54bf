"""The example decodes and checks trades exactly as docs/trade-topic.md says, and works against
the Pub/Sub emulator end to end (publishing like the producer: ordering key and attributes)."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

import trade_subscriber as ts

PROJECT = "local-project"


def make(Trade, symbol="BTCUSDT", trade_id=1, source="stream", **kw):
    fields = dict(
        symbol=symbol,
        trade_id=trade_id,
        price="107407.88000000",
        quantity="0.00024000",
        trade_time=1_751_132_780_368_123 + trade_id,
        event_time=1_751_132_780_369_000 + trade_id,
        receive_time=1_751_132_780_371_999 + trade_id,
        buyer_is_maker=trade_id % 2 == 0,
        source=source,
    )
    fields.update(kw)
    return Trade(**fields)


def attrs(t):
    return {"symbol": t.symbol, "source": t.source}


def test_the_shipped_proto_compiles_and_round_trips_exactly(Trade):
    t = make(Trade, trade_id=0, price="0.00000001", quantity="92233.72036854", buyer_is_maker=False)
    back = Trade.FromString(t.SerializeToString())
    assert back == t
    assert ts.check(back, attrs(back)) is None
    line = json.loads(ts.to_json(back))
    assert line["price"] == "0.00000001" and line["trade_id"] == 0 and line["buyer_is_maker"] is False


@pytest.mark.parametrize(
    "change, attributes, reason",
    [
        ({"price": "1e5"}, None, 'field "price"'),
        ({"trade_time": 1_751_132_780_368}, None, 'field "trade_time"'),
        ({"source": "replay"}, None, 'field "source"'),
        ({"symbol": "btcusdt"}, None, 'field "symbol"'),
        ({}, {"symbol": "ARBUSDT", "source": "stream"}, "attribute 'symbol' is 'ARBUSDT'"),
    ],
)
def test_contract_breaches_are_reported(Trade, change, attributes, reason):
    t = make(Trade, **change)
    got = ts.check(t, attributes or attrs(t))
    assert got is not None and reason in got, got


@pytest.mark.parametrize("source", ["stream", "backfill", "batch", "archive"])
def test_every_contract_source_is_accepted(Trade, source):
    # "archive" (Binance's public trade archive) joined the contract's sources later: a new value
    # of a string field, which this check must accept like the first three.
    t = make(Trade, source=source)
    assert ts.check(t, attrs(t)) is None


def test_missing_required_fields_are_caught_although_parsing_accepts_them(Trade):
    partial = Trade(symbol="BTCUSDT", trade_id=1).SerializePartialToString()
    decoded = Trade.FromString(partial)  # Python's protobuf does not enforce `required`
    assert "missing required fields" in ts.check(decoded, {"symbol": "BTCUSDT", "source": ""})


def test_the_dedup_rule_keeps_each_pair_once_across_rotation_and_backfill():
    d = ts.Dedup()
    arrivals = [*range(1, 61), *range(50, 121), *range(131, 151), *range(121, 131), 125]
    kept = [i for i in arrivals if d.first_sighting("BTCUSDT", i)]
    assert sorted(kept) == list(range(1, 151))
    assert d.first_sighting("ARBUSDT", 1), "symbols are independent"


@pytest.mark.emulator
def test_the_example_prints_exactly_the_filtered_symbols_trades_from_the_emulator(Trade, emulator_host):
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = emulator_host
    topic = f"pytrades-{uuid.uuid4().hex[:12]}"
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    topic_path = publisher.topic_path(PROJECT, topic)
    publisher.create_topic(name=topic_path)

    env = dict(os.environ, PUBSUB_EMULATOR_HOST=emulator_host, GCP_PROJECT=PROJECT)
    proc = subprocess.Popen(
        [sys.executable, str(ts.Path(ts.__file__)), "--topic", topic, "--symbol", "ARBUSDT",
         "--limit", "6", "--timeout", "60", "--dedup"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stderr.readline()
        assert "created subscription" in first, first
        # Two symbols; ARBUSDT 3 is sent twice (once from the stream, once as a backfill).
        sent = [make(Trade, "BTCUSDT", i) for i in range(1, 5)]
        sent += [make(Trade, "ARBUSDT", i) for i in range(1, 7)]
        sent.insert(8, make(Trade, "ARBUSDT", 3, source="backfill"))  # after ARBUSDT 4: late
        for t in sent:
            publisher.publish(topic_path, t.SerializeToString(), ordering_key=t.symbol, **attrs(t)).result()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ids = [json.loads(line)["trade_id"] for line in out.splitlines()]
    symbols = {json.loads(line)["symbol"] for line in out.splitlines()}
    assert ids == [1, 2, 3, 4, 5, 6], (ids, err)
    assert symbols == {"ARBUSDT"}
    assert "deleted subscription" in err
    publisher.delete_topic(topic=topic_path)
