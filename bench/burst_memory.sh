#!/usr/bin/env bash
# RSS of `daftra-bridge serve` before, during and after a burst of concurrent live sorted CSV
# exports (issue 15 item 13). Uses the release binaries:
#   cargo build --release --bins && bench/burst_memory.sh [records] [concurrent]
# Prints one line per figure; BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-100000}
concurrent=${2:-8}
bin=${BIN:-target/release}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
port_sim=$((20000 + RANDOM % 10000)); port_bridge=$((port_sim + 1))

"$bin/daftra-sim" --bind 127.0.0.1:$port_sim --records "$records" --resources work_orders 2>"$tmp/sim.log" &
for _ in $(seq 1 600); do curl -sf -o /dev/null -H 'apikey: sim-api-key' "http://127.0.0.1:$port_sim/api2/work_orders?limit=1" && break; sleep 0.2; done

DAFTRA_BASE_URL=http://127.0.0.1:$port_sim DAFTRA_API_KEY=sim-api-key \
DATABASE_URL=sqlite://$tmp/bridge.sqlite3 BIND_ADDR=127.0.0.1:$port_bridge \
AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f AMQP_EXCHANGE=bench.burst.$$ \
POLL_INTERVAL_SECS=86400 RUST_LOG=warn "$bin/daftra-bridge" serve 2>"$tmp/bridge.log" &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port_bridge/status" | grep -q '"last_outcome":"baseline"' && break; sleep 0.5
done
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status; }
sleep 2
echo "records=$records concurrent=$concurrent"
echo "idle after the first poll: $(rss) MB"
peak=0
( while kill -0 $pid 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$tmp/peak"; sleep 0.1; done ) &
watcher=$!
start=$(date +%s.%N)
pids=()
for _ in $(seq 1 "$concurrent"); do
  curl -sf -o /dev/null "http://127.0.0.1:$port_bridge/exports/work_orders.csv?source=live&sort=-title" &
  pids+=($!)
done
wait "${pids[@]}"
end=$(date +%s.%N)
kill $watcher 2>/dev/null || true
echo "burst of $concurrent live sorted CSV exports: $(echo "$end - $start" | bc) s, peak RSS $(cat "$tmp/peak" 2>/dev/null || echo '?') MB"
sleep 2
echo "RSS 2 s after the burst: $(rss) MB"
sleep 8
echo "RSS 10 s after the burst: $(rss) MB"
