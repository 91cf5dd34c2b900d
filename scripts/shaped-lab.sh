#!/usr/bin/env bash
# A router of three network namespaces with a deep tbf queue, for measuring latency under load
# by hand (issue 22; tests/speedtest_ns.rs builds the same path in Rust). Needs root, iproute2
# and the tbf qdisc.
#
#   scripts/shaped-lab.sh up [--shape down|up|none] [--rate 20mbit] [--queue-ms 600] [--cc cubic]
#                            [--initcwnd 10]
#   ip netns exec btlab-s target/debug/btest server --listen 10.81.2.2:2000 &
#   ip netns exec btlab-c target/debug/btest client 10.81.2.2 --latency echo ...
#   scripts/shaped-lab.sh down
#
# Client namespace btlab-c (10.81.1.2) - router btlab-r (10.81.1.1 | 10.81.2.1) - server
# namespace btlab-s (10.81.2.2). `--shape down` puts the tbf on the router's interface towards
# the client (what the server sends queues there), `--shape up` on the one towards the server.
# The queue is a byte limit: rate x queue-ms, so a full queue delays a packet by queue-ms.
#
# Congestion control: a namespace other than the initial one may only take a default from
# net.ipv4.tcp_allowed_congestion_control (the kernel refuses anything else with EPERM; here
# that list is "reno bbr", so `sysctl -w net.ipv4.tcp_congestion_control=cubic` fails inside
# the namespace). A route's `congctl` attribute has no such restriction and applies to
# connections made (client) and accepted (server) over it, so each end's default route
# carries it, with `--initcwnd` (and the same initrwnd) as the first window: 10 is the
# kernel's default; tests/speedtest_ns.rs uses 200 so that the queue is full within a load
# phase's first second (why: docs/reliability.md, issue 22 item 6).
set -euo pipefail

C=btlab-c R=btlab-r S=btlab-s
cmd=${1:-}
shift || true
shape=none rate=20mbit queue_ms=600 cc=cubic iw=10
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --queue-ms) queue_ms=$2; shift 2 ;;
    --cc) cc=$2; shift 2 ;;
    --initcwnd) iw=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

down() {
  for n in $C $R $S; do ip netns del "$n" 2>/dev/null || true; done
}

# bits/s of a tc rate word (20mbit, 500kbit, 1gbit)
rate_bps() {
  local r=${1,,}
  case "$r" in
    *gbit) echo $(( ${r%gbit} * 1000000000 )) ;;
    *mbit) echo $(( ${r%mbit} * 1000000 )) ;;
    *kbit) echo $(( ${r%kbit} * 1000 )) ;;
    *bit) echo "${r%bit}" ;;
    *) echo "rate $1: use NNmbit, NNkbit or NNgbit" >&2; exit 2 ;;
  esac
}

case "$cmd" in
  up)
    down
    ip netns add $C; ip netns add $R; ip netns add $S
    ip link add c0lab netns $C type veth peer name r0lab netns $R
    ip link add r1lab netns $R type veth peer name s0lab netns $S
    ip -n $C addr add 10.81.1.2/24 dev c0lab
    ip -n $R addr add 10.81.1.1/24 dev r0lab
    ip -n $R addr add 10.81.2.1/24 dev r1lab
    ip -n $S addr add 10.81.2.2/24 dev s0lab
    ip -n $C link set c0lab up; ip -n $R link set r0lab up
    ip -n $R link set r1lab up; ip -n $S link set s0lab up
    for n in $C $R $S; do ip -n "$n" link set lo up; done
    ip -n $C route add default via 10.81.1.1 congctl "$cc" initcwnd "$iw" initrwnd "$iw"
    ip -n $S route add default via 10.81.2.1 congctl "$cc" initcwnd "$iw" initrwnd "$iw"
    ip netns exec $R sysctl -q -w net.ipv4.ip_forward=1
    limit=$(( $(rate_bps "$rate") * queue_ms / 8000 ))
    case "$shape" in
      down) dev=r0lab ;;
      up) dev=r1lab ;;
      none) dev= ;;
      *) echo "--shape down|up|none" >&2; exit 2 ;;
    esac
    if [ -n "$dev" ]; then
      tc -n $R qdisc add dev $dev root tbf rate "$rate" burst 32k limit "$limit"
      echo "tbf $rate, limit $limit B ($queue_ms ms) on $dev ($shape)"
    fi
    echo "congestion control $cc, initcwnd $iw on both ends' default routes"
    ;;
  down) down ;;
  *) echo "usage: $0 up [--shape down|up|none] [--rate R] [--queue-ms MS] [--cc NAME] | down" >&2; exit 2 ;;
esac
