"""Summary and report of a local run: what the simulator sent against what landed in BigQuery.

Reads the simulator's ground truth (GET /admin/ground-truth), queries bqemulator over REST
(market.trades_raw, the market.trades view, market.gaps, dwh.klines_*, scd.symbols_history) and,
when given, the consumer's and producer's /metrics. Prints the summary, writes report.md and
report.png (price per symbol, latency histogram) into --out, and exits 1 when a symbol's landed
trade ids are not exactly one contiguous run (a trade lost or duplicated in what users query).

Usage: python scripts/report.py --sim HOST:PORT --bq http://HOST:PORT --project P --out DIR
                                [--consumer-metrics URL] [--producer-metrics URL]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path


def http_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def query(bq: str, project: str, sql: str) -> list[dict]:
    """Runs a query on the BigQuery REST API and returns rows as dicts of strings."""
    out = http_json(f"{bq}/bigquery/v2/projects/{project}/queries",
                    {"query": sql, "useLegacySql": False, "timeoutMs": 60000})
    if "error" in out:
        raise RuntimeError(f"query failed: {out['error'].get('message')}: {sql}")
    names = [f["name"] for f in out.get("schema", {}).get("fields", [])]
    return [{n: c.get("v") for n, c in zip(names, r["f"])} for r in out.get("rows", [])]


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def histogram_quantiles(metrics_text: str, name: str) -> dict[str, float | None]:
    """p50/p95/p99 (upper bucket bounds) of a Prometheus histogram, summed over its labels."""
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(f"{name}_bucket{{"):
            continue
        labels, value = line.rsplit(" ", 1)
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    if not buckets:
        return {"p50": None, "p95": None, "p99": None}
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    result = {}
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        result[label] = next((b for b in bounds if total and buckets[b] >= q * total), None)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim", required=True, help="simulator address HOST:PORT")
    ap.add_argument("--bq", required=True, help="bqemulator REST endpoint http://HOST:PORT")
    ap.add_argument("--project", default="local-project")
    ap.add_argument("--out", required=True, type=Path, help="directory for report.md and report.png")
    ap.add_argument("--consumer-metrics", help="the consumer's /metrics URL or a file scraped from it, for BigQuery latency")
    ap.add_argument("--latency-metric", default="consumer_exchange_to_bigquery_seconds",
                    help="histogram name of trade time to append acknowledged")
    args = ap.parse_args()
    p = args.project

    truth = http_json(f"http://{args.sim}/admin/ground-truth")
    landed = {r["symbol"]: r for r in query(args.bq, p, f"""
        SELECT symbol, COUNT(*) AS n, MIN(trade_id) AS lo, MAX(trade_id) AS hi
        FROM `{p}.market.trades` GROUP BY symbol""")}
    raw = {r["symbol"]: r for r in query(args.bq, p, f"""
        SELECT symbol, COUNT(*) AS n, COUNTIF(source = 'backfill') AS backfilled
        FROM `{p}.market.trades_raw` GROUP BY symbol""")}
    gaps = query(args.bq, p, f"SELECT symbol, from_id, to_id, reason FROM `{p}.market.gaps`")
    lat = sorted(float(r["ms"]) for r in query(args.bq, p, f"""
        SELECT (UNIX_MICROS(receive_time) - UNIX_MICROS(trade_time)) / 1000 AS ms
        FROM `{p}.market.trades_raw` WHERE source = 'stream'"""))

    ok = True
    lines = ["| symbol | produced by sim during the run (ids) | landed (view) | holes | raw rows | duplicates suppressed | backfilled |",
             "|---|---|---|---|---|---|---|"]
    print(f"{'symbol':10} {'produced by sim (run)':>28} {'landed':>8} {'holes':>6} {'raw':>8} {'dups':>6} {'backfill':>8}")
    for sym, t in sorted(truth["symbols"].items()):
        l, r = landed.get(sym), raw.get(sym)
        n = int(l["n"]) if l else 0
        lo, hi = (int(l["lo"]), int(l["hi"])) if l else (None, None)
        holes = (hi - lo + 1 - n) if l else 0
        raw_n = int(r["n"]) if r else 0
        dups = raw_n - n
        backfilled = int(r["backfilled"]) if r else 0
        if n == 0 or holes != 0:
            ok = False
        sent = f"{t['first_id']}..{t['last_id']}"
        got = f"{lo}..{hi}" if l else "none"
        print(f"{sym:10} {sent:>28} {n:>8} {holes:>6} {raw_n:>8} {dups:>6} {backfilled:>8}  (landed ids {got})")
        lines.append(f"| {sym} | {sent} | {n} ({got}) | {holes} | {raw_n} | {dups} | {backfilled} |")

    p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
    print(f"exchange -> producer latency (ms): p50={p50} p95={p95} p99={p99} over {len(lat)} trades")
    bq_q = {"p50": None, "p95": None, "p99": None}
    if args.consumer_metrics:
        try:
            if args.consumer_metrics.startswith("http"):
                with urllib.request.urlopen(args.consumer_metrics, timeout=5) as resp:
                    text = resp.read().decode()
            else:  # a file scraped before the consumer stopped
                text = Path(args.consumer_metrics).read_text()
            bq_q = histogram_quantiles(text, args.latency_metric)
        except OSError as e:
            print(f"consumer metrics unavailable: {e}")
    print(f"exchange -> BigQuery latency (s, bucket bounds): {bq_q}")
    print(f"gap records: {len(gaps)}")

    klines = {}
    for sym in truth["symbols"]:
        try:
            rows = query(args.bq, p, f"SELECT COUNT(*) AS n FROM `{p}.dwh.klines_{sym.lower()}`")
            klines[sym] = int(rows[0]["n"])
        except (RuntimeError, OSError):
            klines[sym] = None
    try:
        scd = query(args.bq, p, f"""SELECT COUNT(*) AS versions, COUNTIF(is_current) AS current
                                   FROM `{p}.scd.symbols_history`""")[0]
    except (RuntimeError, OSError):
        scd = None
    print(f"klines loaded: {klines}")
    print(f"SCD versions: {scd}")

    args.out.mkdir(parents=True, exist_ok=True)
    md = ["# Local run report", "", "## Trades: sent vs landed", "", *lines, "",
          "## Latency", "",
          f"- exchange to producer (ms): p50 {p50}, p95 {p95}, p99 {p99} over {len(lat)} streamed trades",
          f"- exchange to BigQuery (s, histogram bucket bounds): {bq_q}", "",
          "## Gaps", "", f"{len(gaps)} gap record(s)", *[f"- {g}" for g in gaps], "",
          "## Batch", "", f"- klines per symbol: {klines}", f"- SCD versions: {scd}", "",
          f"Verdict: {'every symbol landed as one contiguous run of ids' if ok else 'HOLES OR NOTHING LANDED'}",
          "", "![charts](report.png)"]
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    try:
        chart(args, p, sorted(truth["symbols"]), lat)
    except Exception as e:  # the chart is a nicety; the summary above is the result
        print(f"chart not written: {e}")
    print(f"report: {args.out / 'report.md'}")
    return 0 if ok else 1


def chart(args, p: str, symbols: list[str], lat: list[float]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(symbols) + 1, 1, figsize=(9, 2.4 * (len(symbols) + 1)))
    for ax, sym in zip(axes, symbols):
        rows = query(args.bq, p, f"""SELECT UNIX_MICROS(trade_time) AS t, CAST(price AS STRING) AS price
            FROM `{p}.market.trades` WHERE symbol = '{sym}' ORDER BY trade_id""")
        t0 = int(rows[0]["t"]) if rows else 0
        ax.plot([(int(r["t"]) - t0) / 1e6 for r in rows], [float(r["price"]) for r in rows], lw=0.8)
        ax.set_title(f"{sym} price (plotting only: values stay exact in BigQuery)", fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
    axes[-1].hist(lat, bins=50)
    axes[-1].set_title("exchange to producer latency (ms)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "report.png", dpi=90)


if __name__ == "__main__":
    sys.exit(main())
