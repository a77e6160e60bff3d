#!/usr/bin/env bash
# The image test: builds the image from the Dockerfile around a given release binary (buildah,
# the `binary` stage replaced by --build-context, so nothing is pulled), then runs it the way the
# task definition in cloudformation/service.yml runs the dualprobe container (user, read-only
# root, capabilities, environment with DUALPROBE_CONFIG as the template renders it, command,
# health check, init, volumes, stop timeout; image/task_container.py maps every field) with
# podman and runc, in a network namespace of its own against local peers only:
#   - dnsmasq in the namespace answers the template's target names with documentation
#     addresses on the namespace's lo; an HTTP server there stands in for the ALB (ports 80 and
#     443, so TLS and the signed AWS calls fail, as they must without AWS);
#   - the IPv4 address of ec2.REGION.api.aws has no route, as in the private subnets.
# Checks: the image's config, labels and exact file tree; /-/ready turns 200 (every target and
# family finished a first cycle); `podman healthcheck run` passes; the port answers on both
# families; the running process is uid 65532 with no capabilities under an init; the ALB
# stand-in is probed over both families; the SSM agent's directories are writable by 65532 and
# by root without capabilities (the agent's identity) while / is read-only; SIGTERM stops it
# within the stop timeout with exit status 0. Prints the image size. Cleans up everything.
#
#   scripts/check-image.sh [--dockerfile FILE] [--template FILE] BINARY
#
# Needs root, buildah, podman, runc, dnsmasq, ip, curl, python3-yaml, tini (tini-static, the
# init for InitProcessEnabled) and busybox-static (a static busybox bind-mounted read-only into
# the container to attempt real writes, the way ECS Exec bind-mounts its agent).
set -euo pipefail
cd "$(dirname "$0")/.."

dockerfile=Dockerfile
template=cloudformation/service.yml
bin=""
while (($#)); do
  case "$1" in
    --dockerfile) dockerfile="$2"; shift 2 ;;
    --template) template="$2"; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "check-image: unknown option $1" >&2; exit 2 ;;
    *) bin="$1"; shift ;;
  esac
done

die() { echo "check-image: FAIL: $*" >&2; exit 1; }
failures=()
fail() { echo "check-image: FAIL: $*" >&2; failures+=("$*"); }
ok() { echo "check-image: ok: $*"; }
# A group of checks: `mark` before it, `passed && ok ...` after it.
mark() { marked=${#failures[@]}; }
passed() { ((${#failures[@]} == marked)); }

[[ -n "$bin" ]] || die "usage: scripts/check-image.sh [--dockerfile FILE] [--template FILE] BINARY"
[[ -x "$bin" ]] || die "$bin: not an executable file"
[[ -f "$dockerfile" ]] || die "$dockerfile: no such Dockerfile"
[[ -f "$template" ]] || die "$template: no such template"
[[ "$(id -u)" == 0 ]] || die "needs root (network namespaces, rootful podman storage)"
for tool in buildah podman runc dnsmasq ip curl python3 readelf; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-test-deps.sh installs it)"
done
tini=/usr/bin/tini-static busybox=/bin/busybox
[[ -x "$tini" ]] || die "$tini not found (Debian package tini)"
if [[ ! -x "$busybox" ]] || readelf -d "$busybox" 2>/dev/null | grep -q NEEDED; then
  die "$busybox is missing or not static (Debian package busybox-static)"
fi
python3 -c 'import yaml' 2>/dev/null || die "python3 cannot import yaml (Debian python3-yaml)"

run_id="$$"
work="$(mktemp -d /tmp/check-image.XXXXXX)"
ns="dpimg-$run_id"
ctr="dualprobe-check-$run_id"
img="localhost/dualprobe-check:$run_id"
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
podman=(podman "${storage[@]}" --tmpdir "$work/libpod" --cgroup-manager cgroupfs
        --events-backend file --runtime runc)
buildah=(buildah "${storage[@]}")
[[ -e /dev/shm/libpod_lock ]] && shm_lock_was_there=1 || shm_lock_was_there=0
peer_pids=()
volumes=()
ns_made=0 img_mounted=0

cleanup() {
  local rc=$?
  set +e
  "${podman[@]}" rm -f -t 0 "$ctr" >/dev/null 2>&1
  ((${#volumes[@]})) && "${podman[@]}" volume rm -f "${volumes[@]}" >/dev/null 2>&1
  ((img_mounted)) && "${podman[@]}" image unmount "$img" >/dev/null 2>&1
  "${podman[@]}" rmi -f "$img" >/dev/null 2>&1
  for pid in "${peer_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  # A peer still in the namespace (none expected) would keep it busy: name it, then kill it.
  if ((ns_made)) && [[ -n "$(ip netns pids "$ns")" ]]; then
    echo "check-image: killing leftover processes in $ns: $(ip netns pids "$ns" | tr '\n' ' ')" >&2
    ip netns pids "$ns" | xargs -r kill
  fi
  ((ns_made)) && ip netns del "$ns"
  # Anything podman left mounted under the work dir (its shm tmpfs) before removing it.
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount 2>/dev/null
  rm -rf "$work"
  ((shm_lock_was_there)) || rm -f /dev/shm/libpod_lock
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "check-image: FAIL: line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR

# ------------------------------------------------------------------ build
version="$("$bin" --version | awk '{print $2}')"
[[ -n "$version" ]] || die "$bin --version printed no version"
mkdir "$work/binary"
cp "$bin" "$work/binary/dualprobe"
echo "check-image: building $img from $dockerfile around $bin ($version)"
# --pull=never: the builder stage's base image cannot be pulled here; if buildah tried to build
# that stage the build fails at once instead of waiting on a registry. --format docker keeps
# HEALTHCHECK (the OCI image config has no field for it).
if ! "${buildah[@]}" build --pull=never --format docker --build-context "binary=$work/binary" \
     --build-arg "VERSION=$version" -f "$dockerfile" -t "$img" . >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  die "buildah build failed (log above)"
fi
grep -q 'FROM rust' "$work/build.log" && die "buildah built the builder stage: --build-context binary did not replace it"
ok "image built from the prebuilt binary; the builder stage was skipped"

# ------------------------------------------------------------------ the image itself
"${podman[@]}" image inspect "$img" >"$work/image.json"
mark
python3 - "$work/image.json" "$version" <<'EOF' || fail "image config differs from what the README promises (above)"
import json, sys
img = json.load(open(sys.argv[1]))[0]
cfg, version = img["Config"], sys.argv[2]
want = {
    "User": "65532:65532",
    "Entrypoint": ["/dualprobe"],
    "Cmd": ["run", "--log-format", "json"],
    "ExposedPorts": {"9469/tcp": {}},
    "Volumes": {"/var/lib/amazon": {}, "/var/log/amazon": {}},
}
bad = [f"{k}: {cfg.get(k)!r}, want {v!r}" for k, v in want.items() if cfg.get(k) != v]
hc = img.get("Healthcheck") or {}
if hc.get("Test") != ["CMD", "/dualprobe", "healthcheck"]:
    bad.append(f"HEALTHCHECK {hc.get('Test')!r}, want ['CMD', '/dualprobe', 'healthcheck']")
labels = cfg.get("Labels") or {}
for k, v in {"title": "dualprobe", "version": version, "licenses": "Apache-2.0"}.items():
    if labels.get(f"org.opencontainers.image.{k}") != v:
        bad.append(f"label org.opencontainers.image.{k}={labels.get(f'org.opencontainers.image.{k}')!r}, want {v!r}")
for k in ("source", "description"):
    if not labels.get(f"org.opencontainers.image.{k}"):
        bad.append(f"label org.opencontainers.image.{k} missing")
for b in bad:
    print(f"check-image: image config: {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
passed && ok "image config: user 65532:65532, entrypoint, cmd, HEALTHCHECK, port 9469/tcp, volumes, OCI labels"

root="$("${podman[@]}" image mount "$img")"
img_mounted=1
# The whole tree: one static binary, the agent's directories, nothing else (no shell).
tree="$(cd "$root" && find . -mindepth 1 -printf '%M %U:%G %p\n' | sort -k3)"
want_tree="-rwxr-xr-x 0:0 ./dualprobe
drwxr-xr-x 0:0 ./var
drwxr-xr-x 0:0 ./var/lib
drwxr-xr-x 0:0 ./var/lib/amazon
drwxrwxr-x 65532:0 ./var/lib/amazon/ssm
drwxr-xr-x 0:0 ./var/log
drwxr-xr-x 0:0 ./var/log/amazon
drwxrwxr-x 65532:0 ./var/log/amazon/ssm"
if [[ "$tree" == "$want_tree" ]]; then
  ok "image tree: /dualprobe and the SSM agent's directories (65532:0, 0775), nothing else"
else
  fail "image tree differs; got:
$tree
want:
$want_tree"
fi
if cmp -s "$root/dualprobe" "$bin"; then
  ok "/dualprobe is byte-identical to $bin"
else
  fail "/dualprobe in the image is not $bin"
fi
"${podman[@]}" image unmount "$img" >/dev/null
img_mounted=0
size="$("${podman[@]}" image inspect --format '{{.Size}}' "$img")"
"${podman[@]}" save --format docker-archive -o "$work/image.tar" "$img" >/dev/null 2>&1
gz="$(gzip -c "$work/image.tar" | wc -c)"
rm -f "$work/image.tar"
echo "check-image: image size: $size bytes ($(awk -v b="$size" 'BEGIN{printf "%.1f", b/1048576}') MiB) uncompressed, $gz bytes ($(awk -v b="$gz" 'BEGIN{printf "%.1f", b/1048576}') MiB) gzip-compressed"

# ------------------------------------------------------------------ the task's container
python3 image/task_container.py "$template" dualprobe "$work" || die "cannot render the dualprobe container from $template"
mapfile -d '' run_args <"$work/run.args"
mapfile -d '' cmd_args <"$work/command.args"
# fact KEY...: a value of facts.json (strings as they are, the rest as JSON).
fact() {
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[k]
print(v if isinstance(v, str) else json.dumps(v))' "$work/facts.json" "$@"
}
user="$(fact user)"
stop_timeout="$(fact stop_timeout)"
[[ "$user" == 65532:65532 ]] || fail "task definition User is $user; the image and README promise 65532:65532"
[[ "$(fact read_only)" == true ]] || fail "task definition has no ReadonlyRootFilesystem: true"
[[ "$(fact cap_drop)" == '["ALL"]' ]] || fail "task definition drops $(fact cap_drop), not [ALL]"
[[ "$(fact init)" == true ]] || fail "task definition has no LinuxParameters.InitProcessEnabled: true (ECS Exec needs it)"
[[ "$(fact ports)" == "[9469]" ]] || fail "task definition ports $(fact ports), want [9469]"
vol_args=()
while IFS=$'\t' read -r vname vpath vro; do
  volumes+=("$ctr-$vname")
  "${podman[@]}" volume create "$ctr-$vname" >/dev/null
  # A new named volume is filled from the image's VOLUME path, as Fargate fills task storage.
  if [[ "$vro" == True ]]; then vol_args+=(-v "$ctr-$vname:$vpath:ro"); else vol_args+=(-v "$ctr-$vname:$vpath"); fi
done < <(python3 -c 'import json, sys
for v in json.load(open(sys.argv[1]))["volumes"]:
    print(v["name"], v["path"], v["read_only"], sep="\t")' "$work/facts.json")
# The directories ECS Exec's SSM agent writes: its data store (amazon-ssm-agent's appconfig
# DefaultDataStorePath, session and IPC files included) and the log directory.
ssm_paths=(/var/lib/amazon/ssm /var/log/amazon/ssm)
for p in "${ssm_paths[@]}"; do
  python3 -c 'import json, sys
p = sys.argv[2] + "/"
sys.exit(not any(not v["read_only"] and p.startswith(v["path"].rstrip("/") + "/")
                 for v in json.load(open(sys.argv[1]))["volumes"]))' "$work/facts.json" "$p" \
    || fail "$p is on no writable volume of the task definition (ECS Exec's agent cannot write it)"
done

# ------------------------------------------------------------------ namespace and peers
ip netns add "$ns"
ns_made=1
nsx() { ip netns exec "$ns" "$@"; }
# (peers are started with ip netns exec itself, not nsx, so that $! is the peer's own pid)
ip -n "$ns" link set lo up
ip -n "$ns" addr add 192.0.2.10/32 dev lo
ip -n "$ns" addr add 2001:db8::10/128 dev lo
region="us-east-1"   # the renderer's AWS::Region
alb="$(fact environment DUALPROBE_CONFIG | awk '/^  - name: alb$/ {a=1} a && /host:/ {print $2; exit}')"
[[ -n "$alb" ]] || die "no alb target with a host in the rendered DUALPROBE_CONFIG"
# ec2.REGION.api.aws is IPv6-only reachable by design: its A record points where no route goes.
# github.com (github-ipv4only) is an IPv4-only name: an A record only, and --local makes dnsmasq
# answer its AAAA with NODATA (without it, a server with no upstream answers REFUSED).
ip netns exec "$ns" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
  --listen-address=127.0.0.1 --bind-interfaces --port=53 --log-facility=- \
  --host-record="s3.dualstack.$region.amazonaws.com,192.0.2.10,2001:db8::10" \
  --host-record="ec2.$region.api.aws,198.51.100.20,2001:db8::10" \
  --host-record="$alb,192.0.2.10,2001:db8::10" \
  --host-record="github.com,198.51.100.30" --local=/github.com/ >"$work/dnsmasq.log" 2>&1 &
peer_pids+=($!)
ip netns exec "$ns" python3 -c '
import socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
class S(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
servers = [S(("::", port), H) for port in (80, 443)]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
' >"$work/http.log" 2>&1 &
peer_pids+=($!)
for _ in $(seq 50); do
  nsx curl -fs -o /dev/null http://192.0.2.10/ && nsx curl -fs -o /dev/null "http://[2001:db8::10]:443/" && break
  sleep 0.1
done || true
nsx curl -fs -o /dev/null "http://[2001:db8::10]/" || die "HTTP peer in $ns did not start: $(cat "$work/http.log")"

# ------------------------------------------------------------------ run it as ECS does
# The sandbox's limits are below podman's default ulimits (Fargate's are 65535 open files).
# Periodic health checks need systemd timers, absent here: the test runs them itself below.
shown=()
for a in "${run_args[@]}"; do
  [[ "$a" == *$'\n'* ]] && a="${a%%$'\n'*}... ($(wc -l <<<"$a") lines)"
  shown+=("$a")
done
echo "check-image: podman run ${shown[*]} ${vol_args[*]} $img ${cmd_args[*]}"
# --image-volume=ignore: only the task definition's mounts are writable, not the image's VOLUMEs.
if ! "${podman[@]}" run -d --name "$ctr" --network "ns:/run/netns/$ns" --dns 127.0.0.1 \
     --image-volume=ignore --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
     "${run_args[@]}" "${vol_args[@]}" -v "$busybox:/ecs-execute-command-check/busybox:ro" \
     "$img" "${cmd_args[@]}" >"$work/run.log" 2>&1; then
  cat "$work/run.log" >&2
  die "podman run failed (above)"
fi
logs() { "${podman[@]}" logs "$ctr" 2>&1 | tail -n 40 >&2; }
running() { [[ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$ctr")" == true ]]; }

deadline=$((SECONDS + 90))
ready=""
while ((SECONDS < deadline)); do
  running || { logs; die "the container exited during start (logs above)"; }
  ready="$(nsx curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9469/-/ready || true)"
  [[ "$ready" == 200 ]] && break
  sleep 1
done
[[ "$ready" == 200 ]] || { logs; die "/-/ready is $ready after 90 s (logs above)"; }
ok "/-/ready is 200 after $((SECONDS - deadline + 90)) s: every target and family finished a first cycle"

if "${podman[@]}" healthcheck run "$ctr" >"$work/health.log" 2>&1; then
  ok "podman healthcheck run passed (the task definition's command: $(fact health command))"
else
  fail "podman healthcheck run failed: $(cat "$work/health.log")"
fi
mark
for url in "http://127.0.0.1:9469" "http://[::1]:9469" "http://192.0.2.10:9469" "http://[2001:db8::10]:9469"; do
  code="$(nsx curl -s -o /dev/null -w '%{http_code}' "$url/-/healthy" || true)"
  [[ "$code" == 200 ]] || fail "$url/-/healthy: HTTP $code (port 9469 on both families)"
done
passed && ok "port 9469 answers on 127.0.0.1, ::1 and the task's IPv4 and IPv6 addresses"

# The processes as the kernel sees them: PID 1 the init, dualprobe its child.
mark
pid1="$("${podman[@]}" inspect --format '{{.State.Pid}}' "$ctr")"
if [[ "$(fact init)" == true ]]; then
  child="$(pgrep -P "$pid1" | head -n 1 || true)"
  [[ -n "$child" ]] || die "PID 1 of the container ($pid1, $(tr '\0' ' ' </proc/"$pid1"/cmdline)) has no child"
  [[ "$(tr '\0' ' ' </proc/"$pid1"/cmdline)" == /run/podman-init* ]] \
    || fail "PID 1 is $(tr '\0' ' ' </proc/"$pid1"/cmdline), not the init"
else
  child="$pid1"
fi
cmdline="$(tr '\0' ' ' </proc/"$child"/cmdline)"
[[ "$cmdline" == "/dualprobe ${cmd_args[*]} " ]] || fail "dualprobe runs as '$cmdline', want '/dualprobe ${cmd_args[*]}'"
status="$(cat /proc/"$child"/status)"
if ! grep -qE '^Uid:\s+65532\s+65532\s+65532\s+65532$' <<<"$status" \
   || ! grep -qE '^Gid:\s+65532\s+65532\s+65532\s+65532$' <<<"$status"; then
  fail "dualprobe's ids: $(grep -E '^(Uid|Gid):' <<<"$status" | tr '\n' ' ')"
fi
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
  grep -qE "^$cap:\s+0+$" <<<"$status" || fail "dualprobe has capabilities: $(grep "^$cap:" <<<"$status")"
done
passed && ok "dualprobe (${cmdline% }) runs as 65532:65532 with no capabilities, PID 1 $(tr '\0' ' ' </proc/"$pid1"/cmdline)"

# ECS Exec's agent and the commands it runs are root, with the container's (empty) capability
# set; the test writes as that identity and as dualprobe's.
mark
bb=/ecs-execute-command-check/busybox
for u in 65532:65532 0:0; do
  caps="$("${podman[@]}" exec --user "$u" "$ctr" "$bb" grep CapEff /proc/self/status 2>&1)"
  [[ "$caps" =~ CapEff:[[:space:]]+0+$ ]] || fail "exec as $u has capabilities: $caps"
  for p in "${ssm_paths[@]}"; do
    if out="$("${podman[@]}" exec --user "$u" "$ctr" "$bb" mkdir -p "$p/write-test-${u%%:*}/sub" 2>&1)" \
       && out="$("${podman[@]}" exec --user "$u" "$ctr" "$bb" touch "$p/write-test-${u%%:*}/sub/file" 2>&1)"; then
      ok "$p is writable by $u (made a directory and a file in it)"
    else
      fail "$p is not writable by $u: $out"
    fi
  done
  # Root owns these: without the read-only root even a capability-less root could write.
  for p in / /var /var/lib /var/log; do
    if out="$("${podman[@]}" exec --user "$u" "$ctr" "$bb" touch "${p%/}/write-test" 2>&1)"; then
      fail "$p is writable by $u: the root filesystem is not read-only"
    elif [[ "$out" != *"Read-only file system"* ]]; then
      fail "writing in $p as $u failed, but not because the root is read-only: $out"
    fi
  done
done
passed && ok "/, /var, /var/lib, /var/log: read-only for 65532 and for root (Read-only file system)"
# Root owns the volume roots: the agent can also create what it keeps beside ssm/.
out="$("${podman[@]}" exec --user 0:0 "$ctr" "$bb" mkdir /var/lib/amazon/ec2config-write-test 2>&1)" \
  || fail "/var/lib/amazon is not writable by root without capabilities: $out"

# What it probed, from inside the read-only container, through the injected resolv.conf.
mark
nsx curl -fsS -o "$work/metrics.txt" http://127.0.0.1:9469/metrics || die "GET /metrics failed"
check_metric() { # NAME LABEL=VALUE... VALUE
  local name="$1" want="${!#}" labels=("${@:2:$#-2}")
  python3 - "$work/metrics.txt" "$name" "$want" "${labels[@]}" <<'EOF'
import re, sys
path, name, want = sys.argv[1:4]
labels = dict(l.split("=", 1) for l in sys.argv[4:])
for line in open(path):
    m = re.match(r'^(\w+)\{([^}]*)\} (\S+)', line)
    if m and m.group(1) == name:
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            sys.exit(0 if float(m.group(3)) == float(want) else f"{line.strip()}: want {want}")
sys.exit(f"no {name} series with {labels}")
EOF
}
for fam in ipv4 ipv6; do
  check_metric dualprobe_probe_success target=alb family=$fam check=http 1 \
    || fail "the ALB stand-in was not probed over $fam"
done
for fam in ipv4 ipv6; do
  check_metric dualprobe_expectation_met target=internet-ipv4 family=$fam 1 \
    || fail "internet-ipv4's expectation not met over $fam (IPv4 unreachable, IPv6 reachable by design)"
done
check_metric dualprobe_expectation_met target=github-ipv4only family=ipv6 1 \
  || fail "github-ipv4only's expectation (ipv6: nodata, the dualstack mode's config) not met"
"${podman[@]}" logs "$ctr" >"$work/ctr.log" 2>&1
grep -q '"_aws"' "$work/ctr.log" \
  || fail "no EMF line on stdout: the template's Command (--emf) did not reach the container"
passed && ok "probed the ALB stand-in over both families; internet-ipv4 and github-ipv4only as designed; EMF on stdout"

# ------------------------------------------------------------------ SIGTERM
mark
t0="$(date +%s.%N)"
# (podman's complaint that it cannot remove the systemd health-check timer goes to stop.log)
"${podman[@]}" stop -t "$stop_timeout" "$ctr" >"$work/stop.log" 2>&1 || { cat "$work/stop.log" >&2; die "podman stop failed"; }
took="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')"
code="$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$ctr")"
[[ "$code" == 0 ]] || { logs; fail "exit status $code after SIGTERM (want 0; 137 means SIGKILL at the stop timeout)"; }
awk -v t="$took" -v s="$stop_timeout" 'BEGIN{exit !(t < s)}' || fail "SIGTERM took ${took} s, the stop timeout is ${stop_timeout} s"
"${podman[@]}" logs "$ctr" >"$work/ctr.log" 2>&1
grep -q 'SIGTERM: shutting down' "$work/ctr.log" || fail "dualprobe did not log the SIGTERM"
passed && ok "SIGTERM: stopped in ${took} s (stop timeout ${stop_timeout} s), exit status 0"

if ((${#failures[@]})); then
  echo "check-image: ${#failures[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check-image: all checks passed"
