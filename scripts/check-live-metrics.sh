#!/usr/bin/env bash
# promtool check metrics on a live dualprobe /metrics, with passing and failing checks on both
# families, against local peers only (127.0.0.1 and ::1; IP-literal targets, so no DNS).
#
#   scripts/check-live-metrics.sh target/debug/dualprobe
#
# Starts: a python http.server on 127.0.0.1:P and one on [::1]:P, then dualprobe with
#   ok-v4        127.0.0.1:P  [tcp, http]   (passes)
#   ok-v6        ::1:P        [tcp, http]   (passes)
#   closed-v4    127.0.0.1:C  [tcp]         (refused)
#   closed-v6    ::1:C        [tcp]         (refused)
# waits for /-/ready, then
#   * GET /metrics (no Accept header) | promtool check metrics  -> exit 0, no output
#   * GET /metrics with Accept: application/openmetrics-text; version=1.0.0 -> ends with "# EOF"
# Everything started here is killed on exit.
set -euo pipefail

BIN="${1:?usage: $0 path/to/dualprobe}"
[[ "${BIN}" = /* ]] || BIN="${PWD}/${BIN}"

fail() { echo "check-live-metrics: $*" >&2; exit 1; }
command -v promtool >/dev/null 2>&1 || fail "promtool not found (Debian package prometheus)"
command -v curl >/dev/null 2>&1 || fail "curl not found"
command -v python3 >/dev/null 2>&1 || fail "python3 not found"

# The binary may be relinked by a concurrent build: wait (bounded) until it runs.
for _ in $(seq 1 60); do
  if [[ -x "${BIN}" ]] && "${BIN}" --version >/dev/null 2>&1; then break; fi
  sleep 2
done
"${BIN}" --version >/dev/null 2>&1 || fail "${BIN} is missing or does not run"

WORK="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 20); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  done
  rm -rf "${WORK}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port HOST: a port nothing listens on at HOST right now.
free_port() {
  python3 - "$1" <<'EOF'
import socket, sys
host = sys.argv[1]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(fam, socket.SOCK_STREAM) as s:
    s.bind((host, 0))
    print(s.getsockname()[1])
EOF
}

# A port free on both loopbacks (the http servers share it).
port_both() {
  python3 - <<'EOF'
import socket
for _ in range(100):
    a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    a.bind(("127.0.0.1", 0))
    port = a.getsockname()[1]
    b = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        b.bind(("::1", port))
    except OSError:
        a.close(); b.close(); continue
    a.close(); b.close()
    print(port)
    break
else:
    raise SystemExit("no port free on both 127.0.0.1 and ::1")
EOF
}

HTTP_PORT="$(port_both)"
CLOSED_PORT="$(port_both)"
METRICS_PORT="$(free_port 127.0.0.1)"

mkdir -p "${WORK}/www"
echo ok >"${WORK}/www/index.html"
(cd "${WORK}/www" && exec python3 -m http.server "${HTTP_PORT}" --bind 127.0.0.1) >"${WORK}/http4.log" 2>&1 &
pids+=($!)
(cd "${WORK}/www" && exec python3 -m http.server "${HTTP_PORT}" --bind ::1) >"${WORK}/http6.log" 2>&1 &
pids+=($!)

wait_listen() { # HOST PORT: bounded wait until a TCP connect succeeds
  python3 - "$1" "$2" <<'EOF'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 15
while time.time() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"nothing listens on [{host}]:{port}")
EOF
}
wait_listen 127.0.0.1 "${HTTP_PORT}" || fail "http server on 127.0.0.1:${HTTP_PORT} did not start"
wait_listen ::1 "${HTTP_PORT}" || fail "http server on [::1]:${HTTP_PORT} did not start"

cat >"${WORK}/dualprobe.yml" <<EOF
interval: 1s
timeout: 500ms
targets:
  - name: ok-v4
    host: 127.0.0.1
    port: ${HTTP_PORT}
    checks: [tcp, http]
  - name: ok-v6
    host: "::1"
    port: ${HTTP_PORT}
    checks: [tcp, http]
  - name: closed-v4
    host: 127.0.0.1
    port: ${CLOSED_PORT}
    checks: [tcp]
  - name: closed-v6
    host: "::1"
    port: ${CLOSED_PORT}
    checks: [tcp]
EOF

"${BIN}" check-config "${WORK}/dualprobe.yml" >"${WORK}/check-config.log" 2>&1 \
  || { cat "${WORK}/check-config.log" >&2; fail "config rejected"; }

"${BIN}" run --config "${WORK}/dualprobe.yml" --listen "127.0.0.1:${METRICS_PORT}" >"${WORK}/dualprobe.log" 2>&1 &
pids+=($!)
DP_PID=$!
BASE="http://127.0.0.1:${METRICS_PORT}"

ready=0
for _ in $(seq 1 150); do
  kill -0 "${DP_PID}" 2>/dev/null || { cat "${WORK}/dualprobe.log" >&2; fail "dualprobe exited early"; }
  if curl -fsS -o /dev/null --max-time 2 "${BASE}/-/ready" 2>/dev/null; then ready=1; break; fi
  sleep 0.2
done
((ready)) || { tail -n 50 "${WORK}/dualprobe.log" >&2; fail "dualprobe not ready within 30s"; }

curl -fsS --max-time 10 -o "${WORK}/metrics.txt" "${BASE}/metrics" || fail "GET /metrics failed"

# Sanity: the exposition really has passing and failing checks on both families.
for want in \
  'dualprobe_probe_success{target="ok-v4",check="http",family="ipv4"} 1' \
  'dualprobe_probe_success{target="ok-v6",check="http",family="ipv6"} 1' \
  'dualprobe_probe_success{target="closed-v4",check="tcp",family="ipv4"} 0' \
  'dualprobe_probe_success{target="closed-v6",check="tcp",family="ipv6"} 0'; do
  grep -qF "${want}" "${WORK}/metrics.txt" \
    || { grep '^dualprobe_probe_success' "${WORK}/metrics.txt" >&2 || true; fail "missing in /metrics: ${want}"; }
done

out="$(promtool check metrics <"${WORK}/metrics.txt" 2>&1)" && rc=0 || rc=$?
if ((rc != 0)) || [[ -n "${out}" ]]; then
  printf '%s\n' "${out}" >&2
  fail "promtool check metrics: exit ${rc}, $(printf '%s' "${out}" | wc -l) line(s) of output"
fi

headers="$(curl -fsS --max-time 10 -D - -o "${WORK}/metrics.om" \
  -H 'Accept: application/openmetrics-text; version=1.0.0' "${BASE}/metrics")" \
  || fail "GET /metrics (OpenMetrics) failed"
grep -qi '^content-type: *application/openmetrics-text' <<<"${headers}" \
  || fail "OpenMetrics request answered with $(grep -i '^content-type' <<<"${headers}" || echo 'no content-type')"
[[ "$(tail -n 1 "${WORK}/metrics.om")" == "# EOF" ]] \
  || { tail -n 3 "${WORK}/metrics.om" >&2; fail "OpenMetrics exposition does not end with # EOF"; }

echo "live metrics: promtool check passed"
