#!/usr/bin/env bash
# dotproxy benchmark: `bash bench/run.sh` (or `deno task bench`). See BENCHMARKS.md.
#
# Starts unbound as a local DNS-over-TLS upstream (core 1) that answers every name under `bench.`
# from local data, then, one at a time on core 0, each server under test:
#   dotproxy   this project, forwarding over DoT to that unbound
#   echo       bench/echo_udp.ts, a bare Deno UDP echo, `socket.receive()` as dotproxy calls it
#   echo-reuse the same passing a reused buffer to receive(): the most a Deno UDP server can do
#   dnsdist    with its packet cache, forwarding over DoT to the same unbound
#   unbound    a second unbound as a caching DoT forwarder to the same unbound
#   workers1, workers2   (not in the default list) bench/workers_proto.ts: 1 or 2 Workers with
#              reusePort TCP listeners, on both cores (a prototype; see BENCHMARKS.md)
# and drives each with dnsperf (core 1) through the same workloads:
#   udp-hits      1,000 names, warmed first, UDP, as fast as possible
#   tcp-hits      the same names over TCP, many queries per connection
#   hit-latency   the same names at a fixed rate (-Q), per-query latencies (dnsperf -v) -> p50/p99
#   udp-misses    unique names (every query goes upstream over DoT), as fast as possible
#   miss-latency  unique names at a fixed moderate rate, per-query latencies
#   miss-cpu      unique names at a fixed rate (BENCH_MISS_CPU_QPS): the server's CPU per miss,
#                 which other load on the machine disturbs far less than a top rate
#   dot-hits      the hit names over DNS-over-TLS (dnsperf -m dot), as fast as possible, with
#                 per-query latencies (the servers' TLS listeners, test certificate)
#   doh-hits      DNS-over-HTTPS by h2load (nghttp2-client): HTTP/2 POST of one cached query,
#                 20 connections with 10 streams each, as fast as possible, per-request times
#                 (dnsperf 2.10's -m doh stalls after ~2 queries per connection against
#                 dotproxy's and dnsdist's DoH: DNS-OARC/dnsperf#272, #240)
#   tcp-misses    (not in the default list) unique names over TCP, as fast as possible
# It samples the CPU time of every process during each run, prints the tables (bench/report.ts)
# and writes everything to bench/results/latest/ (built in bench/results/latest.tmp/ first, which
# .gitignore ignores; a failed run leaves it there).
#
# Every load run is bounded (-l); all traffic stays on 127.0.0.1; every process started here is
# stopped on exit. Knobs (environment):
#   BENCH_DURATION=10         seconds per measured run
#   BENCH_SERVERS="dotproxy echo echo-reuse dnsdist unbound"   which servers, in this order
#   BENCH_WORKLOADS="udp-hits tcp-hits hit-latency udp-misses miss-latency miss-cpu dot-hits
#                    doh-hits"   which workloads (the echo servers run the UDP hit ones)
#   BENCH_MISS_CPU_QPS=5000   rate of miss-cpu
#   BENCH_LAT_QPS=            rate of hit-latency; default half of dotproxy's udp-hits rate
#   BENCH_MISS_LAT_QPS=2000   rate of miss-latency
#   BENCH_MISS_NAMES=800000   unique names for udp-misses (each server gets a fresh cache)
#   BENCH_PROFILE=0           1 (or --profile): afterwards, profile dotproxy (--cpu-prof) under
#                             udp-misses and summarise it (bench/profile_summary.ts)
#   BENCH_REF=                a git ref (e.g. HEAD): run dotproxy from `git archive REF` instead
#                             of a copy of the working tree taken at the start
#   BENCH_DOTPROXY_FLAGS=     extra `deno run` flags for dotproxy, e.g. --v8-flags=--trace-gc
#   BENCH_UPSTREAM_NODELAY=1  preload bench/upstream_nodelay.c (built with cc) into the upstream
#                             unbound so it sets TCP_NODELAY, which 1.17 does not (0: don't)
#   BENCH_RESULTS=latest      results go to bench/results/$BENCH_RESULTS/
#   BENCH_PORT_BASE=25300     first port tried; free ports are picked from there
#   BENCH_QUIET_WAIT=15       before each run, wait up to this long until other processes use
#                             less than 10% of a core
#   BENCH_QUIET_BUDGET=120    ... but no more than this in all (0 and 0: never wait)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export NO_COLOR=1
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

for arg in "$@"; do
  case "$arg" in
    --profile) BENCH_PROFILE=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: bash bench/run.sh [--profile]" >&2
      exit 2
      ;;
  esac
done

DURATION="${BENCH_DURATION:-10}"
SERVERS="${BENCH_SERVERS:-dotproxy echo echo-reuse dnsdist unbound}"
WORKLOADS=" ${BENCH_WORKLOADS:-udp-hits tcp-hits hit-latency udp-misses miss-latency miss-cpu dot-hits doh-hits} "
MISS_CPU_QPS="${BENCH_MISS_CPU_QPS:-5000}"
LAT_QPS="${BENCH_LAT_QPS:-}"
MISS_LAT_QPS="${BENCH_MISS_LAT_QPS:-2000}"
MISS_NAMES="${BENCH_MISS_NAMES:-800000}"
PROFILE="${BENCH_PROFILE:-0}"
read -r -a DOTPROXY_FLAGS <<<"${BENCH_DOTPROXY_FLAGS:-}"
REF="${BENCH_REF:-}"
UPSTREAM_NODELAY="${BENCH_UPSTREAM_NODELAY:-1}"
PORT_BASE="${BENCH_PORT_BASE:-25300}"
QUIET_WAIT="${BENCH_QUIET_WAIT:-15}"
QUIET_BUDGET="${BENCH_QUIET_BUDGET:-120}"
HIT_NAMES=1000
SERVER_CORE=0
LOAD_CORE=1
# dnsperf shape for the throughput runs: 20 sockets (or TCP connections), 200 queries in flight.
# (With 500, the first burst overflows a server's default UDP receive buffer and the dropped
# queries hold their dnsperf slots until the 5 s timeout.)
CLIENTS=20
OUTSTANDING=200
# dnsdist TCP workers carry its DoT backend traffic; on one core one worker measured best.
DNSDIST_TCP_THREADS="${BENCH_DNSDIST_TCP_THREADS:-1}"

CA="$ROOT/tests/fixtures/ca.pem"
CERT="$ROOT/tests/fixtures/server.pem"
KEY="$ROOT/tests/fixtures/server-key.pem"

log() { echo "[bench $(date +%T)] $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

RESULTS_NAME="${BENCH_RESULTS:-latest}"
[[ "$RESULTS_NAME" =~ ^[A-Za-z0-9._-]+$ ]] && [[ "$RESULTS_NAME" != *.tmp ]] ||
  die "BENCH_RESULTS must be a plain directory name"
RESULTS="$ROOT/bench/results/$RESULTS_NAME"
OUT="$RESULTS.tmp"

# --- tools --------------------------------------------------------------------------------------
missing=()
for tool in dnsperf unbound dnsdist dig taskset ss h2load; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "missing tools: ${missing[*]}; installing apt packages"
  # Keep the packages' own services (unbound, dnsdist on port 53) from starting.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null &&
      as_root chmod 755 /usr/sbin/policy-rc.d && created_policy=1
  fi
  as_root apt-get update </dev/null || log "apt-get update failed (continuing)"
  as_root apt-get install -y --no-install-recommends \
    dnsperf unbound dnsdist bind9-dnsutils util-linux iproute2 nghttp2-client </dev/null ||
    log "apt-get install reported an error; checking the tools anyway"
  [ "$created_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  hash -r
  for tool in "${missing[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after apt-get install"
  done
fi
command -v deno >/dev/null 2>&1 || die "deno is not on PATH (npm install -g deno@2)"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server on core 0, load on core 1)"
[ -r "$CA" ] && [ -r "$CERT" ] && [ -r "$KEY" ] || die "test certificates missing in tests/fixtures"
HZ="$(getconf CLK_TCK)"

# --- processes and clean-up ---------------------------------------------------------------------
WORK="$(mktemp -d /tmp/dotproxy-bench.XXXXXX)"
PIDS=()
SAMPLER_PID=""

running() {
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ "$state" != Z* ]]
}

stop_pid() {
  local pid="$1" i
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      running "$pid" || break
      sleep 0.05
    done
    running "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
  local kept=()
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]+"${kept[@]}"}")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$SAMPLER_PID" ] && running "$SAMPLER_PID"; then
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
  [ "$rc" -ne 0 ] && log "failed (exit $rc); partial results in ${OUT#"$ROOT"/}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CORE CMD... : runs CMD pinned to CORE in the background, output to logs/NAME.log.
# Sets STARTED_PID.
start() {
  local name="$1" core="$2"
  shift 2
  taskset -c "$core" "$@" >"$OUT/logs/$name.log" 2>&1 </dev/null &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

port_free() { [ -z "$(ss -Hltun "( sport = :$1 )" 2>/dev/null)" ]; }
NEXT_PORT="$PORT_BASE"
free_port() {
  while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  PORT="$NEXT_PORT"
  NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_ready NAME PID PORT EXPECT [dig options...]: polls with dig until the answer contains
# EXPECT; fails loudly (with the log) if the process exits or 30 s pass.
wait_ready() {
  local name="$1" pid="$2" port="$3" expect="$4"
  shift 4
  local deadline=$((SECONDS + 30)) answer
  while :; do
    running "$pid" || die "$name exited during start-up; its log:
$(tail -n 30 "$OUT/logs/$name.log")"
    answer="$(dig "$@" @127.0.0.1 -p "$port" ready.bench A +tries=1 +time=1 2>&1 || true)"
    if grep -q "status: NOERROR" <<<"$answer" && grep -q -- "$expect" <<<"$answer"; then
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$name on port $port is not answering after 30 s:
$answer
its log:
$(tail -n 30 "$OUT/logs/$name.log")"
    sleep 0.2
  done
}

# --- CPU accounting -----------------------------------------------------------------------------
# "pid ticks comm" (utime+stime, all threads) of every process; comm may contain spaces.
snap_procs() {
  # Processes come and go while cat reads: ignore the ones that vanished.
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
    awk '{
      pid = $1; comm = $0; sub(/^[^(]*\(/, "", comm); sub(/\) [^)]*$/, "", comm)
      gsub(/ /, "_", comm); sub(/^.*\) /, ""); print pid, $12 + $13, comm }'
}
now_ns() { date +%s%N; }
# (Per-core busy time from /proc/stat is not used: on this kind of VM its per-CPU counters do not
# add up to wall time, while per-process times, from the scheduler's exact run time, do.)

# other_busy: percent of one core used by processes not started here, over one second.
other_busy() {
  local t0 t1
  snap_procs >"$WORK/quiet.0"
  t0="$(now_ns)"
  sleep 1
  snap_procs >"$WORK/quiet.1"
  t1="$(now_ns)"
  awk -v ours=" $$ ${PIDS[*]+"${PIDS[*]}"} " -v ms="$(((t1 - t0) / 1000000))" -v hz="$HZ" '
    NR == FNR { before[$1] = $2; next }
    index(ours, " " $1 " ") == 0 && ($1 in before) { o += $2 - before[$1] }
    END { printf "%.0f", 100 * 1000 * o / (ms * hz) }' "$WORK/quiet.0" "$WORK/quiet.1"
}

# The window is dnsperf's run: from its start to DURATION later (a background sampler takes the
# end snapshot, because dnsperf itself then waits up to 5 s for queries still outstanding), or to
# dnsperf's exit if that comes first.
cpu_snap() {
  snap_procs >"$WORK/procs.$1"
  now_ns >"$WORK/time.$1"
}
cpu_begin() {
  rm -f "$WORK/time.1"
  cpu_snap 0
  (
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$DURATION" &
    sleeper=$!
    wait "$sleeper"
    cpu_snap 1
  ) &
  SAMPLER_PID=$!
}

# cpu_end SERVER_PID UPSTREAM_PID: sets SRV_CPU UP_CPU PERF_CPU OTHER_CPU (percent of one core;
# PERF_CPU is empty when dnsperf had exited before the end snapshot).
cpu_end() {
  local srv="$1" up="$2" t1
  if running "$SAMPLER_PID"; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    cpu_snap 1
  else
    wait "$SAMPLER_PID" 2>/dev/null || true
  fi
  [ -s "$WORK/time.1" ] || cpu_snap 1
  T0="$(cat "$WORK/time.0")"
  t1="$(cat "$WORK/time.1")"
  read -r SRV_CPU UP_CPU OTHER_CPU PERF_CPU < <(awk -v srv="$srv" -v up="$up" -v self="$$" \
    -v secs="$(((t1 - T0) / 1000000))" -v hz="$HZ" '
    NR == FNR { before[$1] = $2; next }
    {
      d = $2 - before[$1]
      if ($1 == srv) s += d
      else if ($1 == up) u += d
      else if ($3 == "dnsperf") { p += d; seen = 1 }
      else if ($1 != self) o += d
    }
    END {
      k = 100 * 1000 / (secs * hz)
      printf "%.0f %.0f %.0f %s\n", s * k, u * k, o * k, (seen ? sprintf("%.0f", p * k) : "-")
    }' "$WORK/procs.0" "$WORK/procs.1")
  [ "$PERF_CPU" != "-" ] || PERF_CPU=""
}

# latency_tsv BASE: the sorted latencies in $WORK/lat as a distribution in BASE.latency.tsv
# (every percent, plus the tail; not 100k lines).
latency_tsv() {
  local base="$1"
  awk '{ v[NR] = $1 }
    END {
      print "percentile\tms"
      n = split("0.1 1 5 10 20 30 40 50 60 70 80 90 95 99 99.5 99.9 99.99 100", q, " ")
      for (j = 1; j <= n; j++) {
        i = int(q[j] / 100 * NR + 0.999999); if (i < 1) i = 1
        printf "%s\t%.3f\n", q[j], v[i]
      }
    }' "$WORK/lat" >"$base.latency.tsv"
}

# --- one dnsperf run ----------------------------------------------------------------------------
TSV_HEADER="server	workload	target_qps	qps	sent	completed	lost	lost_pct	rcodes	avg_ms	p50_ms	p90_ms	p99_ms	p999_ms	max_ms	srv_cpu	up_cpu	perf_cpu	other_cpu	up_conns	seconds"

# measure SERVER WORKLOAD SERVER_PID TARGET_QPS dnsperf-args...: one measured run, one TSV line.
measure() {
  local server="$1" workload="$2" srv_pid="$3" target="$4"
  shift 4
  local base="$OUT/raw/$server.$workload" verbose=0 a
  for a in "$@"; do [ "$a" = "-v" ] && verbose=1; done
  log "$server $workload: dnsperf $*"
  echo "dnsperf $*" >"$base.txt"
  cpu_begin
  local TIMEFORMAT='%R %U %S'
  if ! { time taskset -c "$LOAD_CORE" dnsperf "$@" >"$WORK/perf.out" 2>"$WORK/perf.err"; } \
    2>"$WORK/perf.time"; then
    cat "$WORK/perf.err" >&2
    die "dnsperf failed ($server $workload)"
  fi
  cpu_end "$srv_pid" "$UP_PID"
  local up_conns
  up_conns="$(ss -Htn state established "( dport = :$UP_PORT )" 2>/dev/null | wc -l)"
  grep -v '^>' "$WORK/perf.out" >>"$base.txt" || true
  cat "$WORK/perf.err" >>"$base.txt"

  # dnsperf's CPU from the end snapshot; if it had already exited, from its rusage over its life.
  local perf_cpu="$PERF_CPU"
  [ -n "$perf_cpu" ] || perf_cpu="$(awk '{ printf "%.0f", 100 * ($2 + $3) / $1 }' "$WORK/perf.time")"
  local p50=- p90=- p99=- p999=- max=-
  if [ "$verbose" = 1 ]; then
    # "> NOERROR name type 0.000123" per answer; "> T ..." for a timeout (no latency).
    awk '$1 == ">" && $2 != "T" && $2 != "I" { print $NF * 1000 }' "$WORK/perf.out" |
      sort -g >"$WORK/lat"
    read -r p50 p90 p99 p999 max < <(awk '
      { v[NR] = $1 }
      function p(q,  i) { i = int(q * NR + 0.999999); if (i < 1) i = 1; return v[i] }
      END {
        if (NR == 0) { print "- - - - -"; exit }
        printf "%.3f %.3f %.3f %.3f %.3f\n", p(0.50), p(0.90), p(0.99), p(0.999), v[NR]
      }' "$WORK/lat")
    latency_tsv "$base"
  fi

  local f="$base.txt"
  local qps sent completed lost lost_pct avg rcodes secs
  qps="$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$f")"
  sent="$(awk '/Queries sent:/ { print $3 }' "$f")"
  completed="$(awk '/Queries completed:/ { print $3 }' "$f")"
  lost="$(awk '/Queries lost:/ { print $3 }' "$f")"
  lost_pct="$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$f")"
  # (TCP runs add a second "Average Latency" for connection set-up: take the first.)
  avg="$(awk '/Average Latency \(s\):/ { printf "%.3f", $4 * 1000; exit }' "$f")"
  rcodes="$(awk -F': *' '/Response codes:/ { gsub(/ /, "_", $2); print $2 }' "$f")"
  secs="$(awk '/Run time \(s\):/ { printf "%.2f", $4 }' "$f")"
  [ -n "$qps" ] || die "no result from dnsperf ($server $workload); see ${f#"$ROOT"/}"
  printf '%s\n' "$server	$workload	$target	$qps	$sent	$completed	$lost	$lost_pct	${rcodes:--}	$avg	$p50	$p90	$p99	$p999	$max	$SRV_CPU	$UP_CPU	$perf_cpu	$OTHER_CPU	$up_conns	$secs" \
    >>"$OUT/results.tsv"
  log "  -> $qps qps, lost $lost_pct%, avg $avg ms, p50 $p50 p99 $p99 ms;" \
    "CPU % server $SRV_CPU upstream $UP_CPU dnsperf $perf_cpu other $OTHER_CPU"
  LAST_QPS="$qps"
}

# Unmeasured run (warm-up).
warm() {
  log "  warm-up: dnsperf $*"
  taskset -c "$LOAD_CORE" dnsperf "$@" >"$WORK/warm.out" 2>&1 ||
    die "warm-up dnsperf failed: $(tail -n 5 "$WORK/warm.out")"
}

# wait_quiet: waits (at most QUIET_WAIT s per call, QUIET_BUDGET s per run) until processes not
# started here use less than 10% of a core over a second: other work skews every number.
QUIET_SPENT=0
wait_quiet() {
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  local start=$SECONDS busy
  while :; do
    busy="$(other_busy)"
    [ "$busy" -lt 10 ] && break
    if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ] ||
      [ $((QUIET_SPENT + SECONDS - start)) -ge "$QUIET_BUDGET" ]; then
      log "  other processes keep using ${busy}% of a core; measuring anyway"
      break
    fi
  done
  QUIET_SPENT=$((QUIET_SPENT + SECONDS - start))
}

# --- configs ------------------------------------------------------------------------------------
write_upstream_conf() {
  cat >"$OUT/configs/unbound-upstream.conf" <<EOF
# The DoT upstream every forwarder uses: answers every name under bench. from local data.
server:
  verbosity: 1
  username: ""
  chroot: ""
  directory: "$WORK"
  do-daemonize: no
  use-syslog: no
  logfile: ""
  pidfile: ""
  num-threads: 1
  so-reuseport: no
  interface: 127.0.0.1@$UP_PORT
  port: $UP_PORT
  tls-port: $UP_PORT
  tls-service-key: "$KEY"
  tls-service-pem: "$CERT"
  do-ip4: yes
  do-ip6: no
  do-udp: no
  do-tcp: yes
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  # Limits far above what the load can use, so this process is never the bottleneck.
  incoming-num-tcp: 4096
  num-queries-per-thread: 4096
  stream-wait-size: 64m
  tcp-idle-timeout: 120000
  edns-tcp-keepalive: yes
  edns-tcp-keepalive-timeout: 120000
  so-rcvbuf: 4m
  so-sndbuf: 4m
  # Never recurse: everything outside bench. is refused.
  local-zone: "." refuse
  local-zone: "bench." redirect
  local-data: "bench. 86400 IN A 192.0.2.53"
remote-control:
  control-enable: no
EOF
}

write_dotproxy_conf() {
  cat >"$OUT/configs/dotproxy.toml" <<EOF
# Defaults everywhere except the addresses and the log level.
[[listeners]]
url = "udp://127.0.0.1:$1"

[[listeners]]
url = "tcp://127.0.0.1:$1"

[[listeners]]
url = "tls://127.0.0.1:$2"
cert_file = "$CERT"
key_file = "$KEY"

[[listeners]]
url = "https://127.0.0.1:$3/dns-query"
cert_file = "$CERT"
key_file = "$KEY"

[[upstreams]]
url = "tls://127.0.0.1:$UP_PORT"
tls_name = "dns.test"
ca_file = "$CA"

[log]
level = "warning"
EOF
}

write_dnsdist_conf() {
  cat >"$OUT/configs/dnsdist.conf" <<EOF
-- No security-status poll: it would send a DNS query off this machine.
setSecurityPollSuffix("")
setLocal("127.0.0.1:$1", {reusePort=false, maxInFlight=1000})
addTLSLocal("127.0.0.1:$2", "$CERT", "$KEY", {provider="openssl", maxInFlight=1000})
addDOHLocal("127.0.0.1:$3", "$CERT", "$KEY", "/dns-query")
setACL({"127.0.0.0/8"})
-- DoT to the upstream, verified against the test CA. maxInFlight enables pipelining
-- (out-of-order) on the backend connections; without it dnsdist 1.7 sends one query at a time
-- per connection and opens many more connections.
newServer({address="127.0.0.1:$UP_PORT", name="unbound-dot", tls="openssl",
  subjectName="dns.test", caStore="$CA", validateCertificates=true, maxInFlight=1000,
  checkName="health.bench.", checkInterval=5})
pc = newPacketCache(1000000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
setMaxUDPOutstanding(65535)
setMaxTCPClientThreads($DNSDIST_TCP_THREADS)
EOF
}

write_unbound_fwd_conf() {
  cat >"$OUT/configs/unbound-forwarder.conf" <<EOF
# unbound as a caching DoT forwarder to the same upstream.
server:
  verbosity: 1
  username: ""
  chroot: ""
  directory: "$WORK"
  do-daemonize: no
  use-syslog: no
  logfile: ""
  pidfile: ""
  num-threads: 1
  so-reuseport: no
  interface: 127.0.0.1@$1
  interface: 127.0.0.1@$2
  interface: 127.0.0.1@$3
  port: $1
  tls-port: $2
  https-port: $3
  tls-service-key: "$KEY"
  tls-service-pem: "$CERT"
  http-endpoint: "/dns-query"
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  tls-cert-bundle: "$CA"
  msg-cache-size: 512m
  rrset-cache-size: 1g
  num-queries-per-thread: 4096
  outgoing-range: 8192
  outgoing-num-tcp: 64
  incoming-num-tcp: 1024
  # Keep upstream TLS connections for the whole run (default: 200 queries each).
  max-reuse-tcp-queries: 1000000
  tcp-reuse-timeout: 120000
  so-rcvbuf: 4m
  so-sndbuf: 4m
forward-zone:
  name: "."
  forward-tls-upstream: yes
  forward-addr: 127.0.0.1@$UP_PORT#dns.test
remote-control:
  control-enable: no
EOF
}

# --- start one server under test (core 0); sets SRV_PID SRV_PORT -------------------------------
start_server() {
  local name="$1"
  free_port
  SRV_PORT="$PORT"
  free_port
  TLS_PORT="$PORT"
  free_port
  DOH_PORT="$PORT"
  case "$name" in
    dotproxy)
      write_dotproxy_conf "$SRV_PORT" "$TLS_PORT" "$DOH_PORT"
      start dotproxy "$SERVER_CORE" deno run --config "$DOTPROXY_DIR/deno.json" --allow-net \
        "--allow-read=$OUT/configs/dotproxy.toml,$CA,$CERT,$KEY" \
        "${DOTPROXY_FLAGS[@]+"${DOTPROXY_FLAGS[@]}"}" \
        "$DOTPROXY_DIR/main.ts" --config "$OUT/configs/dotproxy.toml"
      SRV_PID="$STARTED_PID"
      wait_ready dotproxy "$SRV_PID" "$SRV_PORT" 192.0.2.53
      ;;
    echo | echo-reuse)
      local reuse=()
      [ "$name" = echo-reuse ] && reuse=(--reuse)
      start "$name" "$SERVER_CORE" deno run --unstable-net --allow-net=127.0.0.1 \
        bench/echo_udp.ts --port "$SRV_PORT" "${reuse[@]+"${reuse[@]}"}"
      SRV_PID="$STARTED_PID"
      wait_ready "$name" "$SRV_PID" "$SRV_PORT" "QUESTION SECTION"
      ;;
    dnsdist)
      write_dnsdist_conf "$SRV_PORT" "$TLS_PORT" "$DOH_PORT"
      dnsdist --check-config -C "$OUT/configs/dnsdist.conf" >"$OUT/logs/dnsdist-check.log" 2>&1 ||
        die "dnsdist rejects its config: $(cat "$OUT/logs/dnsdist-check.log")"
      start dnsdist "$SERVER_CORE" dnsdist --supervised --disable-syslog \
        -C "$OUT/configs/dnsdist.conf"
      SRV_PID="$STARTED_PID"
      wait_ready dnsdist "$SRV_PID" "$SRV_PORT" 192.0.2.53
      ;;
    unbound)
      write_unbound_fwd_conf "$SRV_PORT" "$TLS_PORT" "$DOH_PORT"
      unbound-checkconf "$OUT/configs/unbound-forwarder.conf" >/dev/null ||
        die "unbound-checkconf rejects the forwarder config"
      start unbound "$SERVER_CORE" unbound -d -c "$OUT/configs/unbound-forwarder.conf"
      SRV_PID="$STARTED_PID"
      wait_ready unbound "$SRV_PID" "$SRV_PORT" 192.0.2.53
      ;;
    workers1 | workers2)
      start "$name" "$SERVER_CORE,$LOAD_CORE" deno run --allow-net \
        "--allow-read=$CA,$ROOT/bench/workers_proto.ts,$ROOT/lib" \
        bench/workers_proto.ts --port "$SRV_PORT" --workers "${name#workers}" \
        --upstream "127.0.0.1:$UP_PORT" --tls-name dns.test --ca "$CA"
      SRV_PID="$STARTED_PID"
      wait_ready "$name" "$SRV_PID" "$SRV_PORT" 192.0.2.53 +tcp
      ;;
    *) die "unknown server: $name (dotproxy, echo, echo-reuse, dnsdist, unbound, workers1, workers2)" ;;
  esac
  log "$name started (pid $SRV_PID, port $SRV_PORT, core $SERVER_CORE)"
}

# --- the workloads for one server ---------------------------------------------------------------
# Before each measured run: wait (bounded) for the machine to be quiet, then warm up, so that a
# caching server holds every hit name and every server has its upstream connections open (a
# new TLS connection to unbound 1.17 stalls ~40 ms on its first answer; dotproxy closes idle
# ones after 8 s).
warm_hits() { warm "$@" -d "$WORK/hits.txt" -n 1 -l 10 -c 10 -q 50; }
WARM_N=0
warm_misses() {
  WARM_N=$((WARM_N + 1))
  awk -v n=5000 -v k="$WARM_N" 'BEGIN { for (i = 1; i <= n; i++) printf "w%d-%d.bench A\n", k, i }' \
    >"$WORK/warm.txt"
  warm "$@" -d "$WORK/warm.txt" -n 1 -l 2 -c 10 -q 100 -Q 5000
}

want() { [[ "$WORKLOADS" == *" $1 "* ]]; }
encrypted_wanted() { want dot-hits || want doh-hits; }

# The encrypted front doors answer too (checked once the plain listener does).
wait_encrypted_ready() {
  local name="$1" pid="$2"
  wait_ready "$name (DoT)" "$pid" "$TLS_PORT" 192.0.2.53 +tls "+tls-ca=$CA" +tls-hostname=dns.test
  wait_ready "$name (DoH)" "$pid" "$DOH_PORT" 192.0.2.53 +https=/dns-query "+tls-ca=$CA" \
    +tls-hostname=dns.test
}

# measure_h2load SERVER WORKLOAD SERVER_PID: DoH by h2load, HTTP/2 POST of one cached query
# (h1.bench A, ID 0 as RFC 8484 recommends), 20 connections x 10 streams, DURATION seconds. One
# TSV line: req/s as qps, latency percentiles from h2load's per-request log (--log-file).
measure_h2load() {
  local server="$1" workload="$2" srv_pid="$3" base="$OUT/raw/$1.$2"
  printf '\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02h1\x05bench\x00\x00\x01\x00\x01' \
    >"$WORK/doh-query.bin"
  local args=(-c "$CLIENTS" -m 10 -D "$DURATION" -d "$WORK/doh-query.bin" --log-file="$WORK/h2.log"
    -H "content-type: application/dns-message" -H "accept: application/dns-message"
    "https://127.0.0.1:$DOH_PORT/dns-query")
  rm -f "$WORK/h2.log" # h2load appends to its log
  log "$server $workload: h2load ${args[*]}"
  echo "h2load ${args[*]}" >"$base.txt"
  cpu_begin
  taskset -c "$LOAD_CORE" h2load "${args[@]}" >"$WORK/h2.out" 2>&1 ||
    die "h2load failed ($server $workload): $(tail -n 5 "$WORK/h2.out")"
  cpu_end "$srv_pid" "$UP_PID"
  cat "$WORK/h2.out" >>"$base.txt"
  local rps done failed errored total mean max p50=- p90=- p99=- p999=-
  # Per request: start (us since epoch), HTTP status, duration (us).
  awk -F'\t' '$2 == 200 { print $3 / 1000 }' "$WORK/h2.log" | sort -g >"$WORK/lat"
  if [ -s "$WORK/lat" ]; then
    read -r p50 p90 p99 p999 max < <(awk '{ v[NR] = $1 }
      function p(q,  i) { i = int(q * NR + 0.999999); if (i < 1) i = 1; return v[i] }
      END { printf "%.3f %.3f %.3f %.3f %.3f\n", p(0.50), p(0.90), p(0.99), p(0.999), v[NR] }' \
      "$WORK/lat")
    latency_tsv "$base"
  fi
  rps="$(awk '/^finished in/ { gsub(/,/, ""); printf "%.0f", $4 }' "$WORK/h2.out")"
  read -r total done failed errored < <(awk '/^requests:/ { print $2, $8, $12, $14 }' "$WORK/h2.out")
  local h2max
  read -r h2max mean < <(awk '/^time for request:/ {
      m = $5; a = $6
      # h2load prints us/ms/s units; convert to ms.
      if (m ~ /us$/) { sub(/us$/, "", m); m /= 1000 } else if (m ~ /ms$/) sub(/ms$/, "", m)
      else if (m ~ /s$/) { sub(/s$/, "", m); m *= 1000 }
      if (a ~ /us$/) { sub(/us$/, "", a); a /= 1000 } else if (a ~ /ms$/) sub(/ms$/, "", a)
      else if (a ~ /s$/) { sub(/s$/, "", a); a *= 1000 }
      printf "%.3f %.3f\n", m, a }' "$WORK/h2.out")
  [ -n "$max" ] || max="$h2max"
  [ -n "$rps" ] || die "no result from h2load ($server $workload); see ${base#"$ROOT"/}.txt"
  local lost=$((total - done + failed + errored)) lost_pct
  lost_pct="$(awk -v l="$lost" -v t="$total" 'BEGIN { printf "%.2f", (t > 0 ? 100 * l / t : 0) }')"
  local rcodes="HTTP_2xx_${done}"
  printf '%s\n' "$server	$workload	-	$rps	$total	$done	$lost	$lost_pct	$rcodes	$mean	$p50	$p90	$p99	$p999	$max	$SRV_CPU	$UP_CPU	-	$OTHER_CPU	-	$DURATION" \
    >>"$OUT/results.tsv"
  log "  -> $rps req/s, failed $failed, errored $errored, p50 $p50 p99 $p99 max $max ms;" \
    "CPU % server $SRV_CPU other $OTHER_CPU"
}

# The Worker prototype listens on TCP only, one cache per Worker: warmed over TCP, several
# passes, so that every Worker has seen every hit name.
run_workers() {
  local name="$1"
  start_server "$name"
  local to=(-s 127.0.0.1 -p "$SRV_PORT" -m tcp)
  local load=(-c "$CLIENTS" -q "$OUTSTANDING" -l "$DURATION")
  if want tcp-hits; then
    wait_quiet
    warm "${to[@]}" -d "$WORK/hits.txt" -n 5 -l 20 -c 20 -q 50
    measure "$name" tcp-hits "$SRV_PID" - "${to[@]}" -d "$WORK/hits.txt" "${load[@]}"
  fi
  if want tcp-misses; then
    wait_quiet
    warm_misses "${to[@]}"
    measure "$name" tcp-misses "$SRV_PID" - "${to[@]}" -d "$WORK/misses.txt" -n 1 "${load[@]}"
  fi
  stop_pid "$SRV_PID"
  log "$name stopped"
}

run_server() {
  local name="$1"
  if [[ "$name" == workers* ]]; then
    run_workers "$name"
    return
  fi
  start_server "$name"
  local to=(-s 127.0.0.1 -p "$SRV_PORT")
  local load=(-c "$CLIENTS" -q "$OUTSTANDING" -l "$DURATION")

  if want udp-hits || { want hit-latency && [ -z "$LAT_QPS" ]; }; then
    wait_quiet
    warm_hits "${to[@]}"
    measure "$name" udp-hits "$SRV_PID" - "${to[@]}" -d "$WORK/hits.txt" "${load[@]}"
  fi
  if [ -z "$LAT_QPS" ] && want hit-latency; then
    # Half of the first server's (dotproxy's) top rate, rounded down to 100: the issue's target.
    LAT_QPS=$((LAST_QPS / 200 * 100))
    [ "$LAT_QPS" -ge 500 ] || LAT_QPS=500
    log "hit-latency rate for every server: $LAT_QPS qps"
  fi
  if [[ "$name" != echo* ]] && want tcp-hits; then
    wait_quiet
    warm_hits "${to[@]}"
    measure "$name" tcp-hits "$SRV_PID" - "${to[@]}" -m tcp -d "$WORK/hits.txt" "${load[@]}"
  fi
  if want hit-latency; then
    wait_quiet
    warm_hits "${to[@]}"
    measure "$name" hit-latency "$SRV_PID" "$LAT_QPS" "${to[@]}" -d "$WORK/hits.txt" \
      -c 10 -q 200 -l "$DURATION" -Q "$LAT_QPS" -v
  fi
  if [[ "$name" != echo* ]]; then
    if want udp-misses; then
      wait_quiet
      warm_misses "${to[@]}"
      measure "$name" udp-misses "$SRV_PID" - "${to[@]}" -d "$WORK/misses.txt" -n 1 "${load[@]}"
    fi
    if want miss-latency; then
      wait_quiet
      warm_misses "${to[@]}"
      measure "$name" miss-latency "$SRV_PID" "$MISS_LAT_QPS" "${to[@]}" -d "$WORK/misslat.txt" \
        -n 1 -c 10 -q 200 -l "$DURATION" -Q "$MISS_LAT_QPS" -v
    fi
    if want tcp-misses; then
      wait_quiet
      warm_misses "${to[@]}"
      measure "$name" tcp-misses "$SRV_PID" - "${to[@]}" -m tcp -d "$WORK/misses.txt" -n 1 \
        "${load[@]}"
    fi
    if want miss-cpu; then
      wait_quiet
      warm_misses "${to[@]}"
      measure "$name" miss-cpu "$SRV_PID" "$MISS_CPU_QPS" "${to[@]}" -d "$WORK/misscpu.txt" \
        -n 1 -c 10 -q 200 -l "$DURATION" -Q "$MISS_CPU_QPS"
    fi
    if encrypted_wanted; then
      wait_encrypted_ready "$name" "$SRV_PID"
      if want dot-hits; then
        wait_quiet
        warm_hits "${to[@]}"
        measure "$name" dot-hits "$SRV_PID" - -s 127.0.0.1 -p "$TLS_PORT" -m dot \
          -d "$WORK/hits.txt" "${load[@]}" -v
      fi
      if want doh-hits; then
        wait_quiet
        warm_hits "${to[@]}"
        measure_h2load "$name" doh-hits "$SRV_PID"
      fi
    fi
  fi
  stop_pid "$SRV_PID"
  log "$name stopped"
}

# --- profile of dotproxy under udp-misses -------------------------------------------------------
run_profile() {
  mkdir -p "$OUT/profile"
  local flags=("${DOTPROXY_FLAGS[@]+"${DOTPROXY_FLAGS[@]}"}")
  DOTPROXY_FLAGS+=(--cpu-prof "--cpu-prof-dir=$OUT/profile")
  start_server dotproxy
  DOTPROXY_FLAGS=("${flags[@]+"${flags[@]}"}")
  local to=(-s 127.0.0.1 -p "$SRV_PORT")
  wait_quiet
  warm_misses "${to[@]}"
  # Per-thread CPU of the dotproxy process over the run.
  for t in /proc/"$SRV_PID"/task/*; do
    echo "$(basename "$t") $(sed 's/^.*) //' "$t/stat" | awk '{ print $12 + $13 }') $(cat "$t/comm")"
  done >"$WORK/threads.0"
  measure dotproxy-profiled udp-misses "$SRV_PID" - "${to[@]}" -d "$WORK/misses.txt" -n 1 \
    -c "$CLIENTS" -q "$OUTSTANDING" -l "$DURATION"
  for t in /proc/"$SRV_PID"/task/*; do
    echo "$(basename "$t") $(sed 's/^.*) //' "$t/stat" | awk '{ print $12 + $13 }') $(cat "$t/comm")"
  done >"$WORK/threads.1"
  awk -v hz="$HZ" -v secs="$DURATION" 'NR == FNR { b[$1] = $2; next }
    { d = $2 - b[$1]; if (d > 0) { $1 = ""; $2 = ""; sub(/^  /, ""); t[$0] += d } }
    END {
      print "thread\tcpu_percent_of_one_core"
      for (k in t) printf "%s\t%.1f\n", k, 100 * t[k] / (hz * secs)
    }' "$WORK/threads.0" "$WORK/threads.1" >"$OUT/profile/threads.tsv"
  stop_pid "$SRV_PID"
  local prof
  prof="$(ls "$OUT"/profile/*.cpuprofile 2>/dev/null | head -n 1 || true)"
  [ -n "$prof" ] || die "dotproxy wrote no CPU profile"
  deno run --allow-read="$OUT/profile" bench/profile_summary.ts "$prof" --root "$DOTPROXY_DIR" \
    >"$OUT/profile/summary.txt"
  gzip -f "$prof"
  log "profile summary: ${OUT#"$ROOT"/}/profile/summary.txt"
}

# --- main ---------------------------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/logs" "$OUT/configs"
echo "$TSV_HEADER" >"$OUT/results.tsv"

# Which dotproxy code runs: a copy of the working tree taken now (others may edit it mid-run),
# or an export of BENCH_REF.
DOTPROXY_DIR="$WORK/dotproxy-src"
mkdir -p "$DOTPROXY_DIR"
if [ -n "$REF" ]; then
  git archive "$REF" | tar -x -C "$DOTPROXY_DIR" || die "cannot export git ref $REF"
  DOTPROXY_CODE="git archive $REF ($(git rev-parse --short "$REF"))"
else
  cp -r main.ts deno.json lib "$DOTPROXY_DIR/"
  [ -e deno.lock ] && cp deno.lock "$DOTPROXY_DIR/"
  DOTPROXY_CODE="working tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  if [ -n "$(git status --porcelain -- main.ts lib deno.json deno.lock 2>/dev/null)" ]; then
    DOTPROXY_CODE="$DOTPROXY_CODE + uncommitted changes"
  fi
fi
log "dotproxy code: $DOTPROXY_CODE"

# Names: hits (cached after warm-up), misses (each used once per server), warm-up, miss-latency.
awk -v n="$HIT_NAMES" 'BEGIN { for (i = 1; i <= n; i++) printf "h%d.bench A\n", i }' \
  >"$WORK/hits.txt"
awk -v n="$MISS_NAMES" 'BEGIN { for (i = 1; i <= n; i++) printf "m%d.bench A\n", i }' \
  >"$WORK/misses.txt"
awk 'BEGIN { for (i = 1; i <= 200000; i++) printf "l%d.bench A\n", i }' >"$WORK/misslat.txt"
awk -v n="$((MISS_CPU_QPS * DURATION * 2))" 'BEGIN { for (i = 1; i <= n; i++) printf "c%d.bench A\n", i }' \
  >"$WORK/misscpu.txt"

# Is anything else using the CPU? (Other work on the machine skews every number.)
busy_before="$(other_busy)"
if [ "$busy_before" -ge 10 ]; then
  log "WARNING: other processes use ${busy_before}% of a core before the run; numbers will be" \
    "low and noisy (see the other_cpu column)"
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "dotproxy_code: $DOTPROXY_CODE"
  echo "nproc: $(nproc)"
  echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel: $(uname -sr)"
  echo "os: $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
  echo "deno: $(deno --version | head -n 1)"
  echo "dnsperf: $(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }')"
  echo "dnsdist: $(dnsdist --version 2>/dev/null | head -n 1)"
  echo "unbound: $(unbound -V 2>/dev/null | awk '/^Version/ { print $2 }')"
  echo "duration_s: $DURATION"
  echo "servers: $SERVERS"
  echo "dnsperf_throughput: -c $CLIENTS -q $OUTSTANDING -l $DURATION"
  echo "miss_lat_qps: $MISS_LAT_QPS"
  echo "miss_cpu_qps: $MISS_CPU_QPS"
  echo "workloads:$WORKLOADS"
  echo "busy_before_run_pct: $busy_before"
} >"$OUT/meta.txt"

# unbound 1.17 leaves Nagle on for its TLS clients: every forwarder's pipelined answers would
# then wait for the forwarder's delayed ACKs (~0.5 ms typically, 40 ms at worst). Preload a shim
# that sets TCP_NODELAY on its accepted sockets, as a resolver tuned for DoT does.
UP_PRELOAD=()
if [ "$UPSTREAM_NODELAY" = 1 ]; then
  if command -v cc >/dev/null 2>&1 &&
    cc -shared -fPIC -O2 -o "$WORK/upstream_nodelay.so" bench/upstream_nodelay.c -ldl \
      2>"$OUT/logs/upstream_nodelay-cc.log"; then
    UP_PRELOAD=(env "LD_PRELOAD=$WORK/upstream_nodelay.so")
  else
    log "WARNING: cannot build bench/upstream_nodelay.c (no cc?): the upstream keeps Nagle on;" \
      "miss latencies will include its delayed-ACK stalls (apt-get install gcc libc6-dev)"
    UPSTREAM_NODELAY=0
  fi
fi
echo "upstream_nodelay: $([ "$UPSTREAM_NODELAY" = 1 ] && echo "yes (LD_PRELOAD bench/upstream_nodelay.c)" || echo no)" >>"$OUT/meta.txt"

free_port
UP_PORT="$PORT"
write_upstream_conf
start upstream "$LOAD_CORE" "${UP_PRELOAD[@]+"${UP_PRELOAD[@]}"}" unbound -d \
  -c "$OUT/configs/unbound-upstream.conf"
UP_PID="$STARTED_PID"
wait_ready upstream "$UP_PID" "$UP_PORT" 192.0.2.53 +tls "+tls-ca=$CA" +tls-hostname=dns.test
log "upstream unbound (DoT) on 127.0.0.1:$UP_PORT, core $LOAD_CORE, pid $UP_PID"

# Compile dotproxy's module graph once, outside any measurement.
deno cache --config "$DOTPROXY_DIR/deno.json" "$DOTPROXY_DIR/main.ts" >/dev/null 2>&1 ||
  log "deno cache of dotproxy failed (continuing; its start-up will report it)"
deno cache bench/echo_udp.ts bench/report.ts bench/profile_summary.ts bench/workers_proto.ts \
  >/dev/null 2>&1 ||
  log "deno cache failed (continuing; the servers will report it)"

for server in $SERVERS; do run_server "$server"; done
{
  echo "hit_lat_qps: $LAT_QPS"
  echo "quiet_waited_s: $QUIET_SPENT (limits: ${QUIET_WAIT} s per run, ${QUIET_BUDGET} s in all)"
} >>"$OUT/meta.txt"
[ "$PROFILE" = 1 ] && run_profile

stop_pid "$UP_PID"
deno run --allow-read="$OUT" --allow-write="$OUT" bench/report.ts "$OUT"
rm -rf "$RESULTS"
mv "$OUT" "$RESULTS"
log "results: ${RESULTS#"$ROOT"/}/ (summary.md, results.tsv, raw/, logs/, configs/)"
