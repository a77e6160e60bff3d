#!/bin/bash
# Bytes sent and CPU per probe of `pmtu` and `trace` (docs/benchmarks.md): a task -> router ->
# router -> server chain of network namespaces (1280-byte link between the routers, a TLS server
# with a 200-name certificate), five runs of each probe. Needs root, ip, openssl, python3.
#   BIN=target/debug/dualprobe bench/pmtu_netns.sh
set -e
P=dpb$$
BIN=${BIN:-target/debug/dualprobe}; BIN=$(realpath "$BIN")
cleanup(){ kill $SRV 2>/dev/null || true; rm -f /tmp/tm.$$; for r in t r1 r2 s; do ip netns del $P-$r 2>/dev/null || true; done; }
trap cleanup EXIT
for r in t r1 r2 s; do ip netns add $P-$r; ip -n $P-$r link set lo up; ip netns exec $P-$r sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0; done
i=0
for spec in "t r1 192.0.2 2001:db8:1 1500" "r1 r2 198.51.100 2001:db8:2 1280" "r2 s 203.0.113 2001:db8:3 1500"; do
  set -- $spec; ip link add l$i netns $P-$1 type veth peer name r$i netns $P-$2
  if [ $i = 0 ]; then a=2; b=1; else a=1; b=2; fi
  ip -n $P-$1 link set l$i mtu $5 up; ip -n $P-$2 link set r$i mtu $5 up
  ip -n $P-$1 addr add $3.$a/24 dev l$i; ip -n $P-$1 -6 addr add $4::$a/64 dev l$i nodad
  ip -n $P-$2 addr add $3.$b/24 dev r$i; ip -n $P-$2 -6 addr add $4::$b/64 dev r$i nodad
  i=$((i+1))
done
for r in r1 r2; do ip netns exec $P-$r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1; done
ip -n $P-t route add default via 192.0.2.1; ip -n $P-t -6 route add default via 2001:db8:1::1
ip -n $P-s route add default via 203.0.113.1; ip -n $P-s -6 route add default via 2001:db8:3::1
ip -n $P-r1 route add 203.0.113.0/24 via 198.51.100.2; ip -n $P-r1 -6 route add 2001:db8:3::/64 via 2001:db8:2::2
ip -n $P-r2 route add 192.0.2.0/24 via 198.51.100.1; ip -n $P-r2 -6 route add 2001:db8:1::/64 via 2001:db8:2::1
D=$(mktemp -d); openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $D/k.pem -out $D/c.pem -days 2 -subj /CN=x \
  -addext "subjectAltName=$(for n in $(seq 1 200); do printf 'DNS:host-%03d.pmtu.test,' $n; done | sed 's/,$//')" 2>/dev/null
ip netns exec $P-s python3 -c '
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 443)); s.listen(64)
def serve(c):
    try:
        c.settimeout(10); t = ctx.wrap_socket(c, server_side=True); t.recv(1)
    except Exception: pass
    finally: c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' $D/c.pem $D/k.pem & SRV=$!
sleep 1
tx(){ ip -n $P-t -s -j link show l0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }
measure(){ # label args...
  local label=$1; shift
  local best=""
  for k in 1 2 3 4 5; do
    ip -n $P-t route flush cache >/dev/null 2>&1 || true; ip -n $P-t -6 route flush cache >/dev/null 2>&1 || true
    b0=$(tx); /usr/bin/time -o /tmp/tm.$$ -f "%U %S %e" ip netns exec $P-t $BIN "$@" >/dev/null 2>&1 || true; t=$(cat /tmp/tm.$$); b1=$(tx)
    echo "$label run$k bytes=$((b1-b0)) cpu_user_sys=$t"
  done
}
measure "v4 tcp" probe 203.0.113.2:443 --check tcp --family ipv4
measure "v4 tcp,pmtu" probe 203.0.113.2:443 --check tcp,pmtu --family ipv4
measure "v6 tcp" probe [2001:db8:3::2]:443 --check tcp --family ipv6
measure "v6 tcp,pmtu" probe [2001:db8:3::2]:443 --check tcp,pmtu --family ipv6
measure "v4 trace" probe 203.0.113.2:443 --check trace --family ipv4
measure "v6 trace" probe [2001:db8:3::2]:443 --check trace --family ipv6
