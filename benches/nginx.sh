#!/usr/bin/env bash
# edgeroute-host against nginx and HAProxy, as hostname routers in front of the same upstream.
# Run by hand (not in CI); needs Debian's nginx, haproxy and wrk
# (apt-get install nginx-light haproxy wrk).
#
#   benches/nginx.sh [ROUTES...]        default: 10000 1000000
#
# EDGEROUTE_BENCH_OLD=PATH also runs an earlier edgeroute-host binary against this one, 5
# alternating runs each (EDGEROUTE_BENCH_AB_RUNS), and reports the medians, new/old and the median of the run-by-run ratios;
# EDGEROUTE_BENCH_IDLE=N (default 10000; 0 skips it) opens N idle keep-alive connections to
# edgeroute-host (and the earlier binary) and reports its resident memory without and with them.
#
# For each table size N it generates N hostnames (api-t9yhp25-portal.example.com style), then
#  - nginx, one worker, `map $host ... { hostnames; ... }` + proxy_pass with upstream keep-alive;
#  - HAProxy, one thread, `req.hdr(host),lower,map_str(FILE)` (an exact-match tree) + a backend
#    with connection reuse; a new name is added through its runtime API (`add map`);
#  - edgeroute-host serve --snapshot of the same table, every route a balancer to the same origin;
# all proxying to one local upstream (a second nginx answering 200), the router pinned to core 0,
# wrk and the upstream to core 1 (taskset). wrk sends a shuffled, uniform mix of the N Host names.
# It reports requests/s, p99 latency and resident memory of both routers from one run, then runs
# edgeroute again while its snapshot is republished (every 100 ms at 10k routes, every 1 s at
# larger sizes), and times how long an nginx reload takes to serve a newly added name. Last, a
# host following a store with and without `edgeroute apply` of one route every 100 ms (10
# changes/s, a layer each), in 5 alternating runs (EDGEROUTE_BENCH_APPLY_RUNS; 0 skips them), medians.
#
# TLS (at the sizes EDGEROUTE_BENCH_TLS lists, default 10000; 0 skips it): the three routers
# terminate TLS with the same ECDSA P-256 key and certificate (made by openssl; served as the
# default, wrk sending no usable SNI to an address), without session resumption (nginx:
# ssl_session_cache off and no tickets; HAProxy: no cache, no-tls-tickets; edgeroute:
# --tls-sessions 0, and its edgeroute_tls_handshakes_total{result="resumed"} is reported), in
# EDGEROUTE_BENCH_TLS_RUNS (5) runs whose order rotates: new connections per second (every
# request with Connection: close, so each is a full handshake) and keep-alive requests per
# second over https, with the router's CPU time per connection or request (from /proc, so a
# load that wrk's core limits still compares the routers) and how busy its core was; medians.
# EDGEROUTE_BENCH_ONLY=tls runs only that.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx haproxy wrk taskset python3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "benches/nginx.sh needs $tool (apt-get install nginx-light haproxy wrk curl)" >&2; exit 2; }
done
old_bin=${EDGEROUTE_BENCH_OLD:-}
[ -z "$old_bin" ] || [ -x "$old_bin" ] || { echo "EDGEROUTE_BENCH_OLD=$old_bin is not an executable" >&2; exit 2; }
old_bin=${old_bin:+$(cd "$(dirname "$old_bin")" && pwd)/$(basename "$old_bin")}
ab_runs=${EDGEROUTE_BENCH_AB_RUNS:-5}
idle_conns=${EDGEROUTE_BENCH_IDLE:-10000}
tls_sizes=" ${EDGEROUTE_BENCH_TLS:-10000} "
tls_runs=${EDGEROUTE_BENCH_TLS_RUNS:-5}
only=${EDGEROUTE_BENCH_ONLY:-}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 1000000)
duration=${EDGEROUTE_BENCH_SECONDS:-10}
connections=${EDGEROUTE_BENCH_CONNECTIONS:-64}
cores=$(nproc)
[ "$cores" -ge 2 ] || { echo "needs 2 cores (router on one, load on the other)" >&2; exit 2; }

cargo build --release --locked -q -p edgeroute-control -p edgeroute-host -p edgeroute-benches
bin=target/release
work=target/bench-nginx
rm -rf "$work"; mkdir -p "$work"
work=$(cd "$work" && pwd)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/up.pid" ] && kill "$(cat "$work/up.pid")" 2>/dev/null || true
  [ -f "$work/ngx.pid" ] && kill "$(cat "$work/ngx.pid")" 2>/dev/null || true
  [ -f "$work/hap.pid" ] && kill "$(cat "$work/hap.pid")" 2>/dev/null || true
  [ -f "$work/ngx-tls.pid" ] && kill "$(cat "$work/ngx-tls.pid")" 2>/dev/null || true
  [ -f "$work/hap-tls.pid" ] && kill "$(cat "$work/hap-tls.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

UP=18081 NGX=18080 HAP=18082 ER=18090 ER_ADMIN=18091 NGX_TLS=18443 HAP_TLS=18444 ER_TLS=18445

# The upstream: a second nginx, one worker, on the load core.
mkdir -p "$work/up"
cat > "$work/up/nginx.conf" <<EOF
worker_processes 1; daemon on; pid $work/up.pid; error_log $work/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP reuseport; location / { return 200 "ok\n"; } } }
EOF
taskset -c 1 nginx -p "$work/up" -c "$work/up/nginx.conf" -e "$work/up/error.log" 2>/dev/null

wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
rss_kb() { local total=0; for p in "$@"; do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$total"; }
wait_port $UP

# Requests are formatted once (wrk's Lua is on the load core): up to 200k of
# them, Host names drawn uniformly from the table, then sent in random order.
cat > "$work/hosts.lua" <<'EOF'
local hosts = {}
for line in io.lines(os.getenv("HOSTS_FILE")) do hosts[#hosts + 1] = line end
math.randomseed(tonumber(os.getenv("SEED") or "7"))
local requests = {}
for i = 1, math.min(#hosts, 200000) do
  requests[i] = wrk.format("GET", "/", { ["Host"] = hosts[math.random(#hosts)] })
end
hosts = nil
request = function()
  return requests[math.random(#requests)]
end
EOF

# wrk against PORT; prints "requests_per_s p99_ms non2xx".
load() {
  HOSTS_FILE="$work/hosts.txt" taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s "$work/hosts.lua" "http://127.0.0.1:$1/" > "$work/wrk.out" 2>&1
  python3 - "$work/wrk.out" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
print(f"{rps:.0f} {p99:.3f} {bad.group(1) if bad else 0}")
EOF
}


# HAProxy as the router, one thread, the Host looked up in an exact-match
# map: its configuration, with the global lines GLOBAL and the bind line BIND.
haproxy_cfg() {
  local global=$1 bind=$2
  cat <<EOF
global
  maxconn 4096
  nbthread 1
  daemon
$global
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend routes
  $bind
  http-request return status 404 unless { req.hdr(host),lower,map_str($work/hap.map) -m found }
  default_backend up
backend up
  http-reuse always
  server up 127.0.0.1:$UP
EOF
}

# CPU time (clock ticks) the processes PIDS have used.
cpu_ticks() { local total=0; for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$total"; }

# wrk over https against PORT with the script SCRIPT, the router being the
# processes PIDS...; prints "requests_per_s non2xx errors cpu_us_per_request
# router_core_busy_percent".
load_tls() {
  local port=$1 script=$2; shift 2
  local t0; t0=$(cpu_ticks "$@")
  HOSTS_FILE="$work/hosts.txt" taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" \
    -s "$work/$script" "https://127.0.0.1:$port/" > "$work/wrk-tls.out" 2>&1
  local t1; t1=$(cpu_ticks "$@")
  python3 - "$work/wrk-tls.out" "$((t1 - t0))" "$(getconf CLK_TCK)" "$duration" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
cpu = ticks / hz
print(f"{rps:.0f} {bad.group(1) if bad else 0} {sum(map(int, errors.groups())) if errors else 0} "
      f"{cpu * 1e6 / max(total, 1):.1f} {100 * cpu / seconds:.0f}")
EOF
}

# The TLS row (see the top): prints its lines.
tls_row() {
  local n=$1
  sed 's/{ \["Host"\] = hosts\[math.random(#hosts)\] }/{ ["Host"] = hosts[math.random(#hosts)], ["Connection"] = "close" }/' \
    "$work/hosts.lua" > "$work/hosts-close.lua"
  grep -q '"Connection"' "$work/hosts-close.lua" || { echo "hosts-close.lua: no Connection: close" >&2; return 1; }
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=bench.example.com \
    -addext "subjectAltName=DNS:*.example.com,DNS:bench.example.com" \
    -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
  cat "$work/tls.crt" "$work/tls.key" > "$work/tls.pem"
  mkdir -p "$work/ngx-tls"
  cat > "$work/ngx-tls/nginx.conf" <<EOF
worker_processes 1; daemon on; pid $work/ngx-tls.pid; error_log $work/ngx-tls/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  map_hash_max_size 4194304; map_hash_bucket_size 128;
  map \$host \$known { hostnames; default 0; include $work/map.conf; }
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX_TLS ssl reuseport;
    ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / { if (\$known = 0) { return 404; }
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; } } }
EOF
  taskset -c 0 nginx -p "$work/ngx-tls" -c "$work/ngx-tls/nginx.conf" -e "$work/ngx-tls/error.log" 2>/dev/null
  haproxy_cfg "$(printf '  pidfile %s\n  tune.ssl.cachesize 0' "$work/hap-tls.pid")" \
    "bind 127.0.0.1:$HAP_TLS ssl crt $work/tls.pem no-tls-tickets" > "$work/haproxy-tls.cfg"
  taskset -c 0 haproxy -f "$work/haproxy-tls.cfg" 2>"$work/hap-tls.log"
  taskset -c 0 "$bin/edgeroute-host" serve --snapshot "$work/a.snap" --listen 127.0.0.1:$ER --admin-listen 127.0.0.1:$ER_ADMIN \
    --static-root "$work" --tls-listen 127.0.0.1:$ER_TLS --tls-certs "$work/tls.pem" --tls-default-cert "$work/tls.pem" --tls-sessions 0 \
    2>"$work/er-tls.log" & er=$!; pids+=("$er")
  wait_port $NGX_TLS; wait_port $HAP_TLS; wait_port $ER_TLS
  local names=(nginx haproxy edgeroute) ports=($NGX_TLS $HAP_TLS $ER_TLS)
  local ngx_tls_pids; ngx_tls_pids="$(cat "$work/ngx-tls.pid") $(pgrep -P "$(cat "$work/ngx-tls.pid")" | tr '\n' ' ')"
  local router_pids=("$ngx_tls_pids" "$(cat "$work/hap-tls.pid")" "$er")
  declare -A hs=() ka=() errs=() hs_cpu=() ka_cpu=() hs_busy=() ka_busy=()
  for run in $(seq 1 "$tls_runs"); do
    # Each run starts with another router: a machine that speeds up or slows down favours none.
    for k in 0 1 2; do
      local i=$(( (k + run - 1) % 3 )) name
      name=${names[$i]}
      # shellcheck disable=SC2086
      read -r rps bad err cpu busy < <(load_tls "${ports[$i]}" hosts-close.lua ${router_pids[$i]})
      hs[$name]+="$rps "; errs[$name]+="$bad/$err "; hs_cpu[$name]+="$cpu "; hs_busy[$name]+="$busy "
      # shellcheck disable=SC2086
      read -r rps bad err cpu busy < <(load_tls "${ports[$i]}" hosts.lua ${router_pids[$i]})
      ka[$name]+="$rps "; errs[$name]+="$bad/$err "; ka_cpu[$name]+="$cpu "; ka_busy[$name]+="$busy "
    done
  done
  local metrics; metrics=$(curl -s "http://127.0.0.1:$ER_ADMIN/metrics")
  local full resumed
  full=$(awk '/^edgeroute_tls_handshakes_total\{result="ok"/ {s += $2} END {print s + 0}' <<<"$metrics")
  resumed=$(awk '/^edgeroute_tls_handshakes_total\{result="resumed"/ {s += $2} END {print s + 0}' <<<"$metrics")
  kill "$er"; wait "$er" 2>/dev/null || true
  kill "$(cat "$work/ngx-tls.pid")" "$(cat "$work/hap-tls.pid")" 2>/dev/null || true
  rm -f "$work/ngx-tls.pid" "$work/hap-tls.pid"; sleep 1
  medn() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
  printf '\n%s hostnames over TLS (ECDSA P-256, no resumption; %s runs of %s s, rotating order; medians)\n' "$n" "$tls_runs" "$duration"
  printf '  new connections (a full handshake and one request each) and keep-alive requests: per second,\n'
  printf '  the router'"'"'s CPU per connection or request, and how busy its core was (100%%: the router is the limit)\n'
  printf '                       conn/s   us/conn  busy%%     req/s   us/req  busy%%\n'
  for name in nginx haproxy edgeroute; do
    printf '  %-20s %7s %9s %6s %9s %8s %6s\n' "$name" "$(medn "${hs[$name]}")" "$(medn "${hs_cpu[$name]}")" \
      "$(medn "${hs_busy[$name]}")" "$(medn "${ka[$name]}")" "$(medn "${ka_cpu[$name]}")" "$(medn "${ka_busy[$name]}")"
  done
  for name in nginx haproxy edgeroute; do
    printf '  %-9s runs: conn/s %s; req/s %s; non-2xx/errors %s\n' "$name" "${hs[$name]% }" "${ka[$name]% }" "${errs[$name]% }"
  done
  local e_hs e_ka
  e_hs=$(medn "${hs[edgeroute]}"); e_ka=$(medn "${ka[edgeroute]}")
  local e_hc e_kc
  e_hc=$(medn "${hs_cpu[edgeroute]}"); e_kc=$(medn "${ka_cpu[edgeroute]}")
  for other in nginx haproxy; do
    printf '  edgeroute / %-8s conn/s %sx, CPU per connection %sx; keep-alive req/s %sx, CPU per request %sx\n' "$other" \
      "$(python3 -c "print(f'{$e_hs / $(medn "${hs[$other]}"):.2f}')")" "$(python3 -c "print(f'{$e_hc / $(medn "${hs_cpu[$other]}"):.2f}')")" \
      "$(python3 -c "print(f'{$e_ka / $(medn "${ka[$other]}"):.2f}')")" "$(python3 -c "print(f'{$e_kc / $(medn "${ka_cpu[$other]}"):.2f}')")"
  done
  printf '  edgeroute handshakes: %s full, %s resumed\n' "$full" "$resumed"
}

report=()
for n in "${sizes[@]}"; do
  echo "== $n hostnames"
  "$bin/generate" "$n" 1 42 "$work/gen.jsonl" /dev/null >/dev/null
  python3 - "$work" "$UP" <<'EOF'
import json, sys
work, up = sys.argv[1], sys.argv[2]
hosts = []
with open(f"{work}/gen.jsonl") as f:
    for line in f:
        d = json.loads(line)["Domain"]
        if not d.startswith("*."):
            hosts.append(d)
with open(f"{work}/table.jsonl", "w") as t, open(f"{work}/hosts.txt", "w") as h, \
        open(f"{work}/map.conf", "w") as m, open(f"{work}/hap.map", "w") as hm:
    for d in hosts:
        t.write(json.dumps({"Domain": d, "Target": f"http://127.0.0.1:{up}"}) + "\n")
        h.write(d + "\n")
        m.write(f"{d} 1;\n")
        hm.write(f"{d} 1\n")
EOF
  "$bin/edgeroute" compile --from "$work/table.jsonl" --out "$work/a.snap" >/dev/null
  # A second snapshot differing by one route, for the swap runs.
  { cat "$work/table.jsonl"; echo "{\"Domain\": \"swapped.example.com\", \"Target\": \"http://127.0.0.1:$UP\"}"; } > "$work/table-b.jsonl"
  "$bin/edgeroute" compile --from "$work/table-b.jsonl" --out "$work/b.snap" >/dev/null
  routes=$(wc -l < "$work/hosts.txt")
  tls_line=""
  if [[ "$tls_sizes" == *" $n "* ]]; then
    # Not in a subshell: its processes must stay known to cleanup.
    tls_row "$n" > "$work/tls-row.txt"
    tls_line=$(cat "$work/tls-row.txt")
    [ "$only" != tls ] || { report+=("$tls_line"); echo "$tls_line"; continue; }
  fi

  # nginx as the router.
  mkdir -p "$work/ngx"
  cat > "$work/ngx/nginx.conf" <<EOF
worker_processes 1; daemon on; pid $work/ngx.pid; error_log $work/ngx/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  map_hash_max_size 4194304; map_hash_bucket_size 128;
  map \$host \$known { hostnames; default 0; include $work/map.conf; }
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX reuseport;
    location / { if (\$known = 0) { return 404; }
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; } } }
EOF
  t0=$(date +%s.%N)
  taskset -c 0 nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -e "$work/ngx/error.log" 2>/dev/null
  wait_port $NGX
  ngx_start=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
  read -r ngx_rps ngx_p99 ngx_bad < <(load $NGX)
  ngx_pids="$(cat "$work/ngx.pid") $(pgrep -P "$(cat "$work/ngx.pid")" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  ngx_rss=$(rss_kb $ngx_pids)

  # nginx reload: a new name, until it is served.
  echo "reloaded-$n.example.com 1;" >> "$work/map.conf"
  t0=$(date +%s.%N)
  nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -s reload 2>/dev/null
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: reloaded-$n.example.com" "http://127.0.0.1:$NGX/")" = 200 ]; do sleep 0.01; done
  ngx_reload=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
  kill "$(cat "$work/ngx.pid")"; rm -f "$work/ngx.pid"; sleep 1

  # HAProxy as the router: one thread, the Host looked up in an exact-match map.
  haproxy_cfg "$(printf '  pidfile %s\n  stats socket %s mode 600 level admin' "$work/hap.pid" "$work/hap.sock")" \
    "bind 127.0.0.1:$HAP" > "$work/haproxy.cfg"
  t0=$(date +%s.%N)
  taskset -c 0 haproxy -f "$work/haproxy.cfg" 2>"$work/hap.log"
  wait_port $HAP
  hap_start=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
  read -r hap_rps hap_p99 hap_bad < <(load $HAP)
  hap_rss=$(rss_kb "$(cat "$work/hap.pid")")
  # A new name through the runtime API, until it is served.
  t0=$(date +%s.%N)
  python3 - "$work/hap.sock" "add map $work/hap.map added-$n.example.com 1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall((sys.argv[2] + "\n").encode()); s.recv(4096)
PY
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: added-$n.example.com" "http://127.0.0.1:$HAP/")" = 200 ]; do sleep 0.01; done
  hap_add=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
  kill "$(cat "$work/hap.pid")"; rm -f "$work/hap.pid"; sleep 1

  # edgeroute as the router.
  t0=$(date +%s.%N)
  taskset -c 0 "$bin/edgeroute-host" serve --snapshot "$work/a.snap" --listen 127.0.0.1:$ER --admin-listen 127.0.0.1:$ER_ADMIN \
    --static-root "$work" 2>"$work/er.log" & er=$!; pids+=("$er")
  wait_port $ER
  er_start=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
  read -r er_rps er_p99 er_bad < <(load $ER)
  er_rss=$(rss_kb "$er")
  kill "$er"; wait "$er" 2>/dev/null || true

  # edgeroute following a store that is republished all the while.
  interval=$([ "$n" -le 10000 ] && echo 0.1 || echo 1)
  store="dir:$work/store"; rm -rf "$work/store"
  # Both objects are stored once; then the pointer alternates between them,
  # replaced atomically as the publisher does, but by a cheap loop, so that
  # the load core spends its time on wrk and the upstream.
  "$bin/edgeroute" publish --snapshot "$work/b.snap" --store "$store" >/dev/null
  cp "$work/store/current.json" "$work/ptr-b.json"
  "$bin/edgeroute" publish --snapshot "$work/a.snap" --store "$store" >/dev/null
  cp "$work/store/current.json" "$work/ptr-a.json"
  taskset -c 0 "$bin/edgeroute-host" serve --store "$store" --listen 127.0.0.1:$ER --admin-listen 127.0.0.1:$ER_ADMIN \
    --static-root "$work" --cache-dir "$work/cache" 2>"$work/er-swap.log" & er=$!; pids+=("$er")
  wait_port $ER
  taskset -c 1 python3 - "$work" "$interval" <<'PY' & publisher=$!; pids+=("$publisher")
import os, sys, time
work, interval = sys.argv[1], float(sys.argv[2])
pointers = [open(f"{work}/ptr-{v}.json", "rb").read() for v in "ba"]
i = 0
while True:
    with open(f"{work}/store/current.json.tmp", "wb") as f:
        f.write(pointers[i % 2])
    os.replace(f"{work}/store/current.json.tmp", f"{work}/store/current.json")
    i += 1
    time.sleep(interval)
PY
  read -r sw_rps sw_p99 sw_bad < <(load $ER)
  kill "$publisher"; wait "$publisher" 2>/dev/null || true
  swaps=$(curl -s "http://127.0.0.1:$ER_ADMIN/metrics" | awk '/^edgeroute_snapshot_swaps_total/ {print $2}')
  sw_rss=$(rss_kb "$er")
  kill "$er"; wait "$er" 2>/dev/null || true

  # A host following a store, steady or while one route is applied every 100 ms: each run on a
  # fresh store holding a.snap, the runs alternating. In both modes the same applier runs on the
  # load core, so that both load the same: steady, it applies to a store the host does not follow
  # (the row measures what following the layers costs the router, not what the applier's
  # processes take from wrk).
  # This binary against an earlier one (EDGEROUTE_BENCH_OLD), alternating runs.
  ab_old=(); ab_new=()
  if [ -n "$old_bin" ]; then
    for run in $(seq 1 "$ab_runs"); do
      # Old first in odd runs, new first in even ones: a machine that speeds
      # up or slows down during the runs favours neither.
      order=$([ $((run % 2)) = 1 ] && echo "old new" || echo "new old")
      for which in $order; do
        b=$([ "$which" = old ] && echo "$old_bin" || echo "$bin/edgeroute-host")
        taskset -c 0 "$b" serve --snapshot "$work/a.snap" --listen 127.0.0.1:$ER --admin-listen 127.0.0.1:$ER_ADMIN \
          --static-root "$work" 2>"$work/er-ab.log" & er=$!; pids+=("$er")
        wait_port $ER
        read -r rps _p99 _bad < <(load $ER)
        if [ "$which" = old ]; then ab_old+=("$rps"); else ab_new+=("$rps"); fi
        kill "$er"; wait "$er" 2>/dev/null || true
      done
    done
  fi

  # Resident memory with many idle keep-alive connections (each has made one request).
  idle_line=""
  if [ "$idle_conns" -gt 0 ]; then
    for which in new ${old_bin:+old}; do
      b=$([ "$which" = old ] && echo "$old_bin" || echo "$bin/edgeroute-host")
      extra=(); [ "$which" = new ] && extra=(--max-connections-per-client 0)
      taskset -c 0 "$b" serve --snapshot "$work/a.snap" --listen 127.0.0.1:$ER --admin-listen 127.0.0.1:$ER_ADMIN \
        --static-root "$work" --max-connections $((idle_conns + 1000)) "${extra[@]}" 2>"$work/er-idle.log" & er=$!; pids+=("$er")
      wait_port $ER
      before=$(rss_kb "$er")
      taskset -c 1 python3 - "$ER" "$idle_conns" "$(head -1 "$work/hosts.txt")" > "$work/idle.out" <<'PY' &
import asyncio, resource, sys
port, n, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
async def one(held):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await reader.readuntil(b"ok\n")
    held.append(writer)
async def main():
    held = []
    for start in range(0, n, 500):
        await asyncio.gather(*(one(held) for _ in range(start, min(n, start + 500))))
    print(f"{len(held)} open", flush=True)
    await asyncio.sleep(40)
asyncio.run(main())
PY
      holder=$!; pids+=("$holder")
      for _ in $(seq 1 600); do grep -q open "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
      sleep 1
      with=$(rss_kb "$er")
      idle_line+="$(printf '\n    %-4s %6s MB without, %6s MB with %s connections (%s KiB each)' "$which" "$((before / 1024))" "$((with / 1024))" "$idle_conns" "$(( (with - before) / idle_conns ))")"
      kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true
      kill "$er"; wait "$er" 2>/dev/null || true
    done
  fi

  runs=${EDGEROUTE_BENCH_APPLY_RUNS:-5}
  steady=(); applying=(); layers_seen=()
  for run in $(seq 1 "$runs"); do
    for mode in steady applying; do
      rm -rf "$work/lstore" "$work/lcache" "$work/shadow"
      "$bin/edgeroute" publish --snapshot "$work/a.snap" --store "dir:$work/lstore" >/dev/null
      "$bin/edgeroute" publish --snapshot "$work/a.snap" --store "dir:$work/shadow" >/dev/null
      target=$([ "$mode" = applying ] && echo lstore || echo shadow)
      taskset -c 0 "$bin/edgeroute-host" serve --store "dir:$work/lstore" --listen 127.0.0.1:$ER \
        --admin-listen 127.0.0.1:$ER_ADMIN --static-root "$work" --cache-dir "$work/lcache" 2>"$work/er-apply.log" & er=$!; pids+=("$er")
      wait_port $ER
      until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $(head -1 "$work/hosts.txt")" "http://127.0.0.1:$ER/")" = 200 ]; do sleep 0.05; done
      # Its own process group, so that stopping it stops an apply under way too.
      setsid taskset -c 1 bash -c '
        i=0
        while :; do
          echo "{\"Domain\": \"applied-$i.example.com\", \"Target\": \"http://127.0.0.1:'"$UP"'\"}" \
            | "'"$bin"'/edgeroute" apply --store "dir:'"$work/$target"'" - >/dev/null 2>&1
          i=$((i + 1)); sleep 0.1
        done' & applier=$!; pids+=("$applier")
      read -r rps _p99 _bad < <(load $ER)
      kill -- -"$applier" 2>/dev/null || kill "$applier"; wait "$applier" 2>/dev/null || true
      if [ "$mode" = applying ]; then
        layers_seen+=("$(curl -s "http://127.0.0.1:$ER_ADMIN/metrics" | awk '/^edgeroute_state_layers/ {print $2}')")
        applying+=("$rps")
      else
        steady+=("$rps")
      fi
      kill "$er"; wait "$er" 2>/dev/null || true
    done
  done
  med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
  apply_line=""
  if [ "$runs" -gt 0 ]; then
    st_med=$(med "${steady[@]}"); ap_med=$(med "${applying[@]}")
    apply_line="$(printf '\n  following a store, %s alternating runs each, medians (req/s):\n    steady               %s   (runs: %s)\n    applying 10/s        %s   (runs: %s; layers at the end: %s)\n    applying / steady    %sx' \
      "$runs" "$st_med" "${steady[*]}" "$ap_med" "${applying[*]}" "${layers_seen[*]}" "$(python3 -c "print(f'{$ap_med / $st_med:.2f}')")")"
  fi

  ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
  ab_line=""
  if [ -n "$old_bin" ]; then
    old_med=$(med "${ab_old[@]}"); new_med=$(med "${ab_new[@]}")
    # Each run's pair ran back to back: the median of their ratios sees less
    # of the machine's drift than the ratio of the medians.
    pairs=(); for i in "${!ab_old[@]}"; do pairs+=("$(ratio "${ab_new[$i]}" "${ab_old[$i]}")"); done
    ab_line="$(printf '\n  this binary against %s, %s alternating runs each, medians (req/s):\n    old %s (runs: %s)\n    new %s (runs: %s)\n    new / old %s (run by run: %s; their median %s)' \
      "$old_bin" "$ab_runs" "$old_med" "${ab_old[*]}" "$new_med" "${ab_new[*]}" "$(ratio "$new_med" "$old_med")" \
      "${pairs[*]}" "$(med "${pairs[@]}")")"
  fi
  report+=("$(cat <<EOF

$routes hostnames ($duration s per run, $connections connections, router on core 0, wrk + upstream on core 1)
                       requests/s    p99 ms   RSS MB   non-2xx   start s
  nginx map            $(printf '%10s %9s %8s %9s %9s' "$ngx_rps" "$ngx_p99" "$((ngx_rss / 1024))" "$ngx_bad" "$ngx_start")
  HAProxy map_str      $(printf '%10s %9s %8s %9s %9s' "$hap_rps" "$hap_p99" "$((hap_rss / 1024))" "$hap_bad" "$hap_start")
  edgeroute            $(printf '%10s %9s %8s %9s %9s' "$er_rps" "$er_p99" "$((er_rss / 1024))" "$er_bad" "$er_start")
  edgeroute, swapping  $(printf '%10s %9s %8s %9s' "$sw_rps" "$sw_p99" "$((sw_rss / 1024))" "$sw_bad")   ($swaps swaps, one every ${interval} s)
  edgeroute / nginx    throughput $(ratio "$er_rps" "$ngx_rps")x, p99 $(ratio "$er_p99" "$ngx_p99")x, memory $(ratio "$er_rss" "$ngx_rss")x
  edgeroute / HAProxy  throughput $(ratio "$er_rps" "$hap_rps")x, p99 $(ratio "$er_p99" "$hap_p99")x, memory $(ratio "$er_rss" "$hap_rss")x
  a new name served after: nginx reload ${ngx_reload} s; HAProxy add map ${hap_add} s; edgeroute: the next snapshot swap (see benches/e2e/src/bin/propagation.rs)${ab_line}
  resident memory with idle keep-alive connections:${idle_line}${apply_line}${tls_line}
EOF
)")
  echo "${report[-1]}"
done

echo
echo "== summary"
printf '%s\n' "${report[@]}"
