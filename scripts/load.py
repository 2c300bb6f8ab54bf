#!/usr/bin/env python3
"""Load harness: drives binance-sim -> producer -> Pub/Sub emulator -> consumer -> bqemulator at
chosen trade rates and prints, per stage, throughput, loss, duplicates, CPU seconds and peak RSS
per process, and latency percentiles. Run through `scripts/load` (it builds and starts the
emulators); standard library only.

Per rate: a fresh simulator (70% of the rate on BTCUSDT, 10% on each other symbol), topics,
subscription and dataset; producer and consumer run `--duration` seconds; then the producer is
stopped (SIGTERM, it flushes) and the consumer is given `--drain` seconds to land everything.

Cost: CPU seconds per trade (producer) and per row (consumer) are taken over the steady part of
the run only, from `--warmup` seconds after the producer started to the end of trading, from
/proc (user + system, the whole process) and from each process's own counters; RSS is VmRSS at
the end of trading (steady) beside VmHWM (peak).

Stages:
  exchange  trades the simulator produced while the producer was connected (ground truth)
  producer  trades published to Pub/Sub (producer metrics)
  consumer  rows appended to BigQuery (consumer metrics) and distinct trades in market.trades
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import histogram_quantiles  # noqa: E402 - shared Prometheus histogram reader

PROJECT = "local-project"
SYMBOLS = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]
SHARES = {"BTCUSDT": 0.7, "AAVEUSDT": 0.1, "STXUSDT": 0.1, "ARBUSDT": 0.1}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None, timeout: float = 30) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def bq_ids(rest: str, sql: str) -> list[int]:
    out = json.loads(http(f"{rest}/bigquery/v2/projects/{PROJECT}/queries",
                          {"query": sql, "useLegacySql": False, "maxResults": 10_000_000}, timeout=300))
    return [int(r["f"][0]["v"]) for r in out.get("rows", [])]


def missing_ids(rest: str, view: str, s: str, lo: int, hi: int) -> list[int]:
    """The ids of [lo, hi] not in the view, to say which were lost (the first and last 5)."""
    have = set(bq_ids(rest, f"SELECT trade_id FROM {view} WHERE symbol = '{s}' AND trade_id BETWEEN {lo} AND {hi}"))
    return [i for i in range(lo, hi + 1) if i not in have]


def bq_count(rest: str, sql: str) -> int:
    out = json.loads(http(f"{rest}/bigquery/v2/projects/{PROJECT}/queries",
                          {"query": sql, "useLegacySql": False}, timeout=120))
    return int(out["rows"][0]["f"][0]["v"])


def counter(metrics: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        if head != name and not head.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


class Proc:
    """A child process, its log, and what /proc says about its (and its children's) cost."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.p = subprocess.Popen(args, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                  start_new_session=True)

    def usage(self) -> tuple[float, float]:
        """(CPU seconds, peak RSS MiB) of the process tree, read while it runs."""
        cpu, peak, _ = self.usage3()
        return cpu, peak

    def usage3(self) -> tuple[float, float, float]:
        """(CPU seconds, peak RSS MiB, current RSS MiB) of the process tree."""
        cpu, peak, now = 0.0, 0.0, 0.0
        for pid in self.tree():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
                status = Path(f"/proc/{pid}/status").read_text()
                hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
                cur = re.search(r"VmRSS:\s+(\d+) kB", status)
                peak += int(hwm.group(1)) / 1024 if hwm else 0
                now += int(cur.group(1)) / 1024 if cur else 0
            except (FileNotFoundError, ProcessLookupError):
                pass
        return cpu, peak, now

    def tree(self) -> list[int]:
        pids, todo = [], [self.p.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                    todo.append(int(child))
            except FileNotFoundError:
                pass
        return pids

    def stop(self, grace: float = 40) -> int:
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            return self.p.wait()


def start_sim(bin_dir: Path, rate: float, log_dir: Path) -> tuple[Proc, str]:
    rates = ",".join(f"{s}={rate * SHARES[s]:g}" for s in SYMBOLS)
    out = log_dir / "sim.out"
    sim = Proc("binance-sim", [str(bin_dir / "binance-sim"), "--port", "0", "--rates", rates,
                               "--history-days", "1"], log_dir)
    # The address line goes to stdout, which Proc sends to the log.
    for _ in range(200):
        m = re.search(r"binance-sim listening on (\S+)", sim.log.read_text())
        if m:
            return sim, m.group(1)
        time.sleep(0.05)
    raise SystemExit(f"binance-sim did not start: see {sim.log} ({out})")


def run_rate(args, rate: float, bin_dir: Path, log_root: Path) -> dict:
    tag = f"load{int(rate)}_{int(time.time())}"
    log_dir = log_root / f"{int(rate)}"
    log_dir.mkdir(parents=True, exist_ok=True)
    pubsub, rest, grpc = (os.environ["PIPELINE_PUBSUB_ENDPOINT"], os.environ["PIPELINE_BQ_REST_ENDPOINT"],
                          os.environ["PIPELINE_BQ_GRPC_ENDPOINT"])
    sim, addr = start_sim(bin_dir, rate, log_dir)
    pport, cport = free_port(), free_port()
    names = {"TRADE_TOPIC": f"{tag}_trades", "GAP_TOPIC": f"{tag}_gaps",
             "TRADE_SUBSCRIPTION": f"{tag}_trades_bq", "GAP_SUBSCRIPTION": f"{tag}_gaps_bq",
             "DEAD_LETTER_TOPIC": f"{tag}_dead", "BQ_MARKET_DATASET": f"{tag}_market"}
    common = {"GCP_PROJECT": PROJECT, "PUBSUB_ENDPOINT": pubsub, "LOG_FORMAT": "text", **names}
    consumer = Proc("consumer", [str(bin_dir / "consumer"), "--create-missing"], log_dir,
                    {**common, "BIGQUERY_ENDPOINT": rest, "BIGQUERY_GRPC_ENDPOINT": grpc,
                     "METRICS_ADDR": f"127.0.0.1:{cport}"})
    time.sleep(3)
    producer = Proc("producer", [str(bin_dir / "producer"), "--create-topics"], log_dir,
                    {**common, "BINANCE_WS_URL": f"ws://{addr}", "BINANCE_REST_URL": f"http://{addr}",
                     "METRICS_ADDR": f"127.0.0.1:{pport}"})
    t0 = time.time()
    warmup = min(args.warmup, args.duration / 2)
    time.sleep(warmup)
    w_p, w_c = producer.usage3(), consumer.usage3()
    w_published = counter(http(f"http://127.0.0.1:{pport}/metrics").decode(), "producer_trades_published_total")
    w_appended = counter(http(f"http://127.0.0.1:{cport}/metrics").decode(), "consumer_rows_appended_total",
                         table="trades_raw")
    t_warm = time.time()
    time.sleep(max(0.0, args.duration - warmup))
    truth = json.loads(http(f"http://{addr}/admin/ground-truth"))
    e_p, e_c = producer.usage3(), consumer.usage3()
    p_usage = e_p[:2]
    s_usage = sim.usage()
    p_metrics = http(f"http://127.0.0.1:{pport}/metrics").decode()
    e_appended = counter(http(f"http://127.0.0.1:{cport}/metrics").decode(), "consumer_rows_appended_total",
                         table="trades_raw")
    t_end = time.time()
    steady_published = counter(p_metrics, "producer_trades_published_total") - w_published
    steady_appended = e_appended - w_appended
    producer.stop()
    t_stop = time.time()
    first = {}
    for c in truth["connections"]:
        for s, v in c["symbols"].items():
            if v.get("first_expected_id") is not None:
                first[s] = min(first.get(s, v["first_expected_id"]), v["first_expected_id"])
    due = sum(truth["symbols"][s]["last_id"] - first[s] + 1 for s in first)
    published = counter(p_metrics, "producer_trades_published_total")
    # The consumer must land everything the producer published up to its stop, not only up to
    # the snapshot: trades due before the snapshot can still be in a batch window then.
    final = re.findall(r"trades_published=(\d+)", producer.log.read_text())
    published_final = int(final[-1]) if final else published
    view = f"`{PROJECT}.{names['BQ_MARKET_DATASET']}.trades`"
    raw = f"`{PROJECT}.{names['BQ_MARKET_DATASET']}.trades_raw`"
    landed = 0
    deadline = time.time() + args.drain
    drained = False
    while time.time() < deadline:
        c_metrics = http(f"http://127.0.0.1:{cport}/metrics").decode()
        if counter(c_metrics, "consumer_rows_appended_total", table="trades_raw") >= published_final:
            drained = True
            break
        time.sleep(1)
    t_landed = time.time()
    c_usage = consumer.usage()
    c_metrics = http(f"http://127.0.0.1:{cport}/metrics").decode()
    consumer.stop()
    sim.stop()
    (log_dir / "producer.metrics").write_text(p_metrics)
    (log_dir / "consumer.metrics").write_text(c_metrics)
    landed = bq_count(rest, f"SELECT COUNT(*) FROM {view}")
    in_range = sum(bq_count(rest, f"SELECT COUNT(*) FROM {view} WHERE symbol = '{s}' AND trade_id "
                                  f"BETWEEN {first[s]} AND {truth['symbols'][s]['last_id']}")
                   for s in first)
    raw_rows = bq_count(rest, f"SELECT COUNT(*) FROM {raw}")
    missing = {}
    if drained and in_range < due:
        for s in first:
            gone = missing_ids(rest, view, s, first[s], truth["symbols"][s]["last_id"])
            if gone:
                missing[s] = {"count": len(gone), "first": gone[:5], "last": gone[-5:],
                              "range": [first[s], truth["symbols"][s]["last_id"]]}
                print(f"  LOST {s}: {len(gone)} of {first[s]}..={truth['symbols'][s]['last_id']}: "
                      f"{gone[:5]} .. {gone[-5:]}", flush=True)
    appended = counter(c_metrics, "consumer_rows_appended_total", table="trades_raw")
    return {
        "rate": rate,
        "seconds": round(t_stop - t0, 1),
        "exchange_trades": due,
        "exchange_per_s": due / (t_stop - t0),
        "published": int(published),
        "published_per_s": published / (t_stop - t0),
        "appended": int(appended),
        "appended_per_s": appended / max(1e-9, t_landed - t0),
        "landed_distinct": landed,
        # Not drained: the rest is still in the subscription, so loss cannot be told.
        "lost": due - in_range if drained else None,
        "undrained": None if drained else due - in_range,
        "missing": missing,
        "duplicate_raw_rows": raw_rows - landed,
        "drain_s": round(t_landed - t_stop, 1),
        "steady": {
            "seconds": round(t_end - t_warm, 1),
            "published": int(steady_published),
            "appended": int(steady_appended),
            "producer_us_per_trade": (e_p[0] - w_p[0]) * 1e6 / steady_published if steady_published else None,
            "consumer_us_per_row": (e_c[0] - w_c[0]) * 1e6 / steady_appended if steady_appended else None,
            "producer_rss_mib": e_p[2],
            "consumer_rss_mib": e_c[2],
        },
        "cpu_s": {"binance-sim": s_usage[0], "producer": p_usage[0], "consumer": c_usage[0]},
        "peak_rss_mib": {"binance-sim": s_usage[1], "producer": p_usage[1], "consumer": c_usage[1]},
        "exchange_to_publish": histogram_quantiles(p_metrics, "producer_exchange_to_publish_seconds"),
        "publish_ack": histogram_quantiles(p_metrics, "producer_publish_latency_seconds"),
        "exchange_to_bigquery": histogram_quantiles(c_metrics, "consumer_exchange_to_bigquery_seconds"),
        "append": histogram_quantiles(c_metrics, "consumer_append_seconds"),
    }


def fmt_us(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(results: list[dict]) -> str:
    """The figures BENCHMARKS.md keeps, as a Markdown table."""
    lines = ["| asked/s | published/s (steady) | producer µs/trade | consumer µs/row (rows/s) | exchange->published p50 / p99 "
             "| RSS MiB producer / consumer (peak) | lost / duplicate |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        st = r["steady"]
        q = r["exchange_to_publish"]
        lines.append(
            f"| {r['rate']:,.0f} | {st['published'] / max(st['seconds'], 1e-9):,.0f} "
            f"| {fmt_us(st['producer_us_per_trade'])} "
            f"| {fmt_us(st['consumer_us_per_row'])} ({st['appended'] / max(st['seconds'], 1e-9):,.0f}) "
            f"| {fmt_ms(q['p50'])} / {fmt_ms(q['p99'])} "
            f"| {st['producer_rss_mib']:.0f} ({r['peak_rss_mib']['producer']:.0f}) / "
            f"{st['consumer_rss_mib']:.0f} ({r['peak_rss_mib']['consumer']:.0f}) "
            f"| {'not drained' if r['lost'] is None else r['lost']} / {r['duplicate_raw_rows']} |")
    return "\n".join(lines)


def fmt_ms(v) -> str:
    return "-" if v is None else (f"<= {v * 1000:.0f} ms" if v < 1 else f"<= {v:.1f} s")


def fmt_q(q: dict) -> str:
    def one(v):
        return "-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s")
    return f"p50 <= {one(q['p50'])}, p95 <= {one(q['p95'])}, p99 <= {one(q['p99'])}"


def emulator_usage() -> dict:
    """CPU seconds and RSS of the emulators' processes (they run for the whole harness)."""
    out = {}
    for name, pattern in (("pubsub-emulator", "cloud-pubsub-emulator"), ("bqemulator", "bqemulator-launcher")):
        cpu, rss = 0.0, 0.0
        for pid in subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
                m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                rss += int(m.group(1)) / 1024 if m else 0
            except FileNotFoundError:
                pass
        out[name] = (cpu, rss)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="800,2000,10000,30000", help="trades/s, comma-separated")
    ap.add_argument("--warmup", type=float, default=5,
                    help="seconds after the producer starts before the steady-state cost window opens")
    ap.add_argument("--duration", type=float, default=30, help="seconds of trading per rate")
    ap.add_argument("--drain", type=float, default=120, help="seconds the consumer gets to land the rest")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--out", required=True, help="directory for logs and results.json")
    args = ap.parse_args()
    out = Path(args.out)
    results = []
    for rate in [float(r) for r in args.rates.split(",")]:
        before = emulator_usage()
        r = run_rate(args, rate, Path(args.bin_dir), out)
        after = emulator_usage()
        r["cpu_s"].update({k: after[k][0] - before[k][0] for k in after})
        r["peak_rss_mib"].update({k: after[k][1] for k in after})
        results.append(r)
        print(f"\n== {rate:g} trades/s for {r['seconds']} s ==")
        print(f"  exchange  {r['exchange_trades']} trades ({r['exchange_per_s']:.0f}/s)")
        print(f"  producer  {r['published']} published ({r['published_per_s']:.0f}/s); "
              f"exchange->publish {fmt_q(r['exchange_to_publish'])}; publish ack {fmt_q(r['publish_ack'])}")
        print(f"  consumer  {r['appended']} rows appended ({r['appended_per_s']:.0f}/s incl. drain of "
              f"{r['drain_s']} s); append {fmt_q(r['append'])}")
        lost = (f"not drained in {args.drain:g} s ({r['undrained']} still in the subscription)"
                if r["lost"] is None else r["lost"])
        print(f"  landed    {r['landed_distinct']} distinct in market.trades; lost {lost}; "
              f"duplicate raw rows {r['duplicate_raw_rows']} (hidden by the view)")
        print(f"  latency   exchange->BigQuery {fmt_q(r['exchange_to_bigquery'])}")
        for proc in r["cpu_s"]:
            print(f"  {proc:16s} cpu {r['cpu_s'][proc]:7.1f} s   rss {r['peak_rss_mib'][proc]:7.0f} MiB")
        st = r["steady"]
        print(f"  steady    {st['seconds']} s: producer {fmt_us(st['producer_us_per_trade'])} µs/trade "
              f"({st['published']} trades), consumer {fmt_us(st['consumer_us_per_row'])} µs/row "
              f"({st['appended']} rows); RSS producer {st['producer_rss_mib']:.0f} MiB, "
              f"consumer {st['consumer_rss_mib']:.0f} MiB")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table(results) + "\n")
    print("\n" + table(results))
    print(f"\nresults: {out / 'results.json'}")
    return 0 if all(r["lost"] in (0, None) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
