#!/usr/bin/env bash
# Tests scripts/run-local without running the pipeline: --dry-run (sim and --live), the usage
# errors, and that README.md lists exactly the options --help lists. Takes about a second.
#
# Usage: tests/scripts/test_run_local.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
run="$root/scripts/run-local"
failures=0 passed=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; passed=$((passed + 1)); }
# contains LABEL TEXT NEEDLE...: every NEEDLE is in TEXT.
contains() {
  local label="$1" text="$2" n; shift 2
  for n in "$@"; do
    if [[ "$text" != *"$n"* ]]; then fail "$label: lacks '$n' in: $text"; return; fi
  done
  ok "$label"
}
# exits LABEL WANT ARGS...: run-local ARGS exits with WANT.
exits() {
  local label="$1" want="$2" status=0; shift 2
  "$run" "$@" >/dev/null 2>&1 || status=$?
  if [[ $status -eq $want ]]; then ok "$label"; else fail "$label: exit $status, want $want"; fi
}

out="$("$run" --live --dry-run --symbols btcusdt,arbusdt --duration 30)"
contains "live dry run: URLs, symbols, duration" "$out" \
  "wss://data-stream.binance.vision/stream?streams=" "https://api.binance.com" \
  "BINANCE_WS_URL=wss://data-stream.binance.vision" "SYMBOLS=BTCUSDT,ARBUSDT" "30s" \
  "/api/v3/historicalTrades" "/api/v3/klines"
if [[ "$out" == *binance-sim* ]]; then fail "live dry run starts binance-sim: $out"; else ok "live dry run: no simulator"; fi

out="$("$run" --live --dry-run --ws-url wss://stream.binance.com:9443 --rest-url https://api1.binance.com)"
contains "live dry run: chosen hosts" "$out" "BINANCE_WS_URL=wss://stream.binance.com:9443" \
  "BINANCE_REST_URL=https://api1.binance.com"

out="$("$run" --dry-run --symbols BTCUSDT --rates BTCUSDT=5 --rate-multiplier 2.5 --release)"
# shellcheck disable=SC2016 # the literal placeholder the dry run prints
contains "sim dry run: simulator flags" "$out" \
  "release/binance-sim --port 0 --symbols BTCUSDT --rates BTCUSDT=5 --rate-multiplier 2.5" \
  'BINANCE_WS_URL=ws://$SIM_ADDR' "scripts/report.py"

exits "--live with --rates" 2 --live --dry-run --rates BTCUSDT=5
exits "--ws-url without --live" 2 --dry-run --ws-url wss://x
exits "--duration without value" 2 --duration
exits "--duration not a number" 2 --dry-run --duration 1m
exits "--symbols malformed" 2 --dry-run --symbols "BTC USDT"
exits "unknown option" 2 --symbol BTCUSDT

# The options --help lists and the ones README.md lists between its run-local markers agree.
help_opts="$("$run" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u)"
readme_opts="$(sed -n '/<!-- run-local options -->/,/<!-- \/run-local options -->/p' "$root/README.md" |
  grep -oE -- '--[a-z][a-z-]+' | sort -u || true)"
if [[ -n "$readme_opts" && "$help_opts" == "$readme_opts" ]]; then
  ok "README and --help list the same options"
else
  fail "README vs --help options differ: $(diff <(echo "$help_opts") <(echo "$readme_opts") | tr '\n' ' ')"
fi

echo "test_run_local: $passed passed, $failures failed"
[[ $failures -eq 0 ]]
