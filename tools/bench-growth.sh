#!/usr/bin/env bash
# The growth benchmark (issue 13, item 6): for each log size and backend,
# pre-fill a ledger (ledger-fill), start the release `ledger serve` on it,
# time start → /ready 200, then load it from a separate process
# (ledger-load): validations and usage reports at saturation (closed loop,
# 64 connections), the same at a fixed offered rate (open loop, latency from
# each request's intended send time), and a mixed read load (subscription
# details, invoices, an audit page of one organization, open loop). Samples
# the server's RSS and the data's size, and prints one Markdown row per
# size and backend. Not part of CI (10M needs 10–15 GB of disk a backend).
#
# Usage: tools/bench-growth.sh [--sizes "100000 1000000"] [--with-10m]
#          [--duration 60] [--rate 5000] [--read-rate 500] [--connections 64]
#          [--work DIR] [--backends "sqlite postgres"] [--keep]
# PostgreSQL runs when DATABASE_URL is set (each size in its own schema,
# made fresh through psql). The server runs with the benchmark's limits
# raised: --validations-per-address-per-minute 0,
# --usage-reports-per-key-per-minute 0, --usage-reports-per-day-max 1000000,
# --connections-per-address-max 1024 (all the load comes from one address).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sizes="100000 1000000"
duration=60
rate=5000
read_rate=500
connections=64
work=${TMPDIR:-/tmp}/ledger-bench-growth
backends=""
keep=0
port=${BENCH_PORT:-18480}

while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --with-10m) sizes="$sizes 10000000"; shift ;;
    --duration) duration=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --read-rate) read_rate=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ -z "$backends" ]; then
  backends=sqlite
  if [ -n "${DATABASE_URL:-}" ]; then backends="sqlite postgres"; fi
fi

cd "$root"
cargo build --release -p ledger-api --bin ledger -p ledger-tests --bin ledger-fill --bin ledger-load >&2
bin=${CARGO_TARGET_DIR:-$root/target}/release
export LEDGER_OPERATOR_TOKEN=${LEDGER_OPERATOR_TOKEN:-bench-operator-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d " \n")}
mkdir -p "$work"
server_pid=""
sampler_pid=""

cleanup() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The RSS of a process in MB, from /proc (field VmRSS or VmHWM).
rss_mb() { awk -v f="$2:" '$1 == f { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# A PostgreSQL URL for one size: its own schema, made fresh.
pg_url() {
  local schema=$1
  psql "$DATABASE_URL" -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema" >&2
  local sep='?'; case "$DATABASE_URL" in *\?*) sep='&' ;; esac
  echo "${DATABASE_URL}${sep}options=-c%20search_path%3D${schema}"
}

disk_mb() {
  local backend=$1 dir=$2 schema=$3
  if [ "$backend" = sqlite ]; then
    du -sm "$dir" | cut -f1
  else
    psql "$DATABASE_URL" -At -c "SELECT round(sum(pg_total_relation_size(c.oid)) / 1048576.0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$schema' AND c.relkind IN ('r', 'm')"
  fi
}

# Starts the server on the filled data; sets server_pid and ready_s.
start_server() {
  local dir=$1 url=$2
  local -a db=()
  if [ -n "$url" ]; then db=(--database-url "$url"); fi
  local started; started=$(date +%s.%N)
  DATABASE_URL="" "$bin/ledger" serve --listen "127.0.0.1:$port" --data-dir "$dir" "${db[@]}" \
    --validations-per-address-per-minute 0 --usage-reports-per-key-per-minute 0 \
    --usage-reports-per-day-max 1000000 --connections-per-address-max 1024 \
    >"$dir/server.log" 2>&1 &
  server_pid=$!
  local tries=0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ]; do
    tries=$((tries + 1))
    if [ $tries -gt 36000 ] || ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the server did not become ready; see $dir/server.log" >&2; exit 1
    fi
    sleep 0.01
  done
  ready_s=$(echo "$(date +%s.%N) - $started" | bc)
}

load() {
  local label=$1; shift
  "$bin/ledger-load" --url "http://127.0.0.1:$port" --keys "$keys" --duration "$duration" --label "$label" "$@"
}

# p50/p99/p99.9 of a JSON line, and its rate.
rate_of() { jq -r '.okRate' <<<"$1"; }
lat_of() { jq -r '"\(.p50Ms)/\(.p99Ms)/\(.p999Ms)"' <<<"$1"; }
errors_of() { jq -r '[.statuses | to_entries[] | select(.key | startswith("2") | not) | "\(.key):\(.value)"] | join(" ") | if . == "" then "none" else . end' <<<"$1"; }

rows=()
for size in $sizes; do
  for backend in $backends; do
    dir=$work/$backend-$size
    schema=bench_growth_$size
    rm -rf "$dir"; mkdir -p "$dir"
    url=""
    if [ "$backend" = postgres ]; then url=$(pg_url "$schema"); fi
    keys=$dir/keys.jsonl
    echo "== $backend, $size events: fill" >&2
    fill=$(DATABASE_URL="$url" "$bin/ledger-fill" --data-dir "$dir" --events "$size" --keys-out "$keys" | tail -n 1)
    events=$(jq -r .events <<<"$fill"); fill_rate=$(jq -r .eventsPerSecond <<<"$fill")
    disk=$(disk_mb "$backend" "$dir" "$schema")
    start_server "$dir" "$url"
    rss_ready=$(rss_mb "$server_pid" VmRSS)
    echo "== $backend, $events events: ready in ${ready_s}s, RSS ${rss_ready} MB" >&2
    load_avg=$(cut -d' ' -f1-3 /proc/loadavg)
    vs=$(load "$size" --scenario validate --connections "$connections")
    us=$(load "$size" --scenario usage --connections "$connections")
    vo=$(load "$size" --scenario validate --rate "$rate" --connections 1024)
    uo=$(load "$size" --scenario usage --rate "$rate" --connections 1024)
    ro=$(load "$size" --scenario reads --rate "$read_rate" --connections "$connections")
    load_avg="$load_avg → $(cut -d' ' -f1-3 /proc/loadavg)"
    rss_end=$(rss_mb "$server_pid" VmRSS); hwm=$(rss_mb "$server_pid" VmHWM)
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    disk_end=$(disk_mb "$backend" "$dir" "$schema")
    printf '%s\n' "$vs" "$us" "$vo" "$uo" "$ro" >"$dir/load.jsonl"
    rows+=("| $backend | $events | $fill_rate | $ready_s | $(rate_of "$vs") ($(lat_of "$vs")) | $(rate_of "$us") ($(lat_of "$us")) | $(lat_of "$vo") [$(errors_of "$vo")] | $(lat_of "$uo") [$(errors_of "$uo")] | $(lat_of "$ro") [$(errors_of "$ro")] | $rss_ready / $rss_end / $hwm | $disk → $disk_end | $load_avg |")
    if [ $keep -eq 0 ]; then rm -rf "$dir"; fi
  done
done

cat <<EOF

| backend | events filled | fill events/s | start → ready s | validations/s at saturation (p50/p99/p99.9 ms) | usage reports/s at saturation (p50/p99/p99.9 ms) | validations offered ${rate}/s: p50/p99/p99.9 ms [non-2xx] | usage offered ${rate}/s: p50/p99/p99.9 ms [non-2xx] | reads offered ${read_rate}/s: p50/p99/p99.9 ms [non-2xx] | RSS MB ready / end / peak | disk MB filled → end | load average before → after |
|---|---:|---:|---:|---|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${rows[@]}"
