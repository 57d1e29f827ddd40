#!/usr/bin/env bash
# Kernel-level bad links for `apoyo fieldtest`: each link runs in its own network namespace
# (unshare -n) whose loopback is shaped by the kernel — htb classes by port give different up
# and down rates (tbf alone would shape both directions together), nftables `numgen random`
# drops packets — with the reference endpoint (`apoyo serve`) and `apoyo fieldtest --endpoint`
# inside it. This kernel has no netem qdisc, so there is no added delay: rate and loss only.
#
# One report line per link: counted, lost, double-counted, pending, drain time, goodput vs the
# link rate. Exits non-zero if anything was lost or counted twice, or if a namespace could not
# be set up while running as root (a netns run skipped as root is a failure). Not root: says
# why it skipped and exits 0.
#
#   scripts/netns-loss.sh            # the full runs (3 devices x 8 captures of 16 KiB)
#   scripts/netns-loss.sh --short    # CI: 2 devices x 3 captures of 4 KiB, shorter deadline
#   APOYO_BIN=target/release/apoyo scripts/netns-loss.sh
set -euo pipefail

PORT=18080

if [[ "${1:-}" == "--inner" ]]; then
  # Inside the namespace: NAME UP_BIT DOWN_BIT LOSS_PCT DEVICES CAPTURES BYTES DEADLINE SEED
  shift
  name=$1 up=$2 down=$3 loss=$4 devices=$5 captures=$6 bytes=$7 deadline=$8 seed=$9
  ip link set lo up
  ip link set lo mtu 1500   # tbf/htb burst sized for 1500-byte packets
  ethtool -K lo tso off gso off gro off >/dev/null 2>&1 || true
  tc qdisc add dev lo root handle 1: htb default 30
  tc class add dev lo parent 1: classid 1:10 htb rate "${up}bit" ceil "${up}bit" burst 1600 quantum 1514
  tc class add dev lo parent 1: classid 1:20 htb rate "${down}bit" ceil "${down}bit" burst 1600 quantum 1514
  tc class add dev lo parent 1: classid 1:30 htb rate 10gbit quantum 1514
  # Device → endpoint (to the endpoint's port) and endpoint → device (from it).
  tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dport "$PORT" 0xffff flowid 1:10
  tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$PORT" 0xffff flowid 1:20
  if [[ "$loss" != "0" ]]; then
    nft add table inet badlink
    nft add chain inet badlink out '{ type filter hook output priority 0; }'
    nft add rule inet badlink out tcp dport "$PORT" numgen random mod 100 \< "$loss" drop
    nft add rule inet badlink out tcp sport "$PORT" numgen random mod 100 \< "$loss" drop
  fi
  work=$(mktemp -d)
  trap 'kill "${ep:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
  "$APOYO_BIN" endpoint-keygen --out "$work/keys" >/dev/null
  "$APOYO_BIN" serve --db "$work/ine.db" --listen "127.0.0.1:$PORT" --key "$work/keys/endpoint.key" \
    --processes examples/processes.json --dev >"$work/serve.log" 2>&1 &
  ep=$!
  for _ in $(seq 1 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
  set +e
  json=$("$APOYO_BIN" fieldtest --endpoint "http://127.0.0.1:$PORT" --endpoint-db "$work/ine.db" \
    --endpoint-pub "$work/keys/endpoint.pub" --profile none --devices "$devices" --captures "$captures" \
    --capture-bytes "$bytes" --seed "$seed" --deadline "$deadline" --json 2>"$work/fieldtest.err" | tail -n 1)
  rc=$?
  set -e
  if [[ -z "$json" ]]; then
    echo "netns $name: fieldtest printed no report (exit $rc):" >&2
    cat "$work/fieldtest.err" >&2
    exit 1
  fi
  field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$json" | tr -d '"'; }
  payload=$(field payload_bytes) drain=$(field drain_seconds)
  goodput=$(awk -v p="$payload" -v d="$drain" 'BEGIN { printf "%.1f", p * 8 / d / 1000 }')
  ratio=$(awk -v g="$goodput" -v u="$up" -v n="$devices" 'BEGIN { printf "%.0f", 100 * g / (u / 1000) }')
  printf 'netns %-22s up %7.1f kbit/s down %7.1f kbit/s loss %2s%% | captured %s counted %s duplicates %s quarantined %s pending %s lost %s double_counted %s | drain %ss | goodput %s kbit/s = %s%% of the uplink | wire %s B payload %s B retries %s\n' \
    "$name" "$(awk -v x="$up" 'BEGIN{print x/1000}')" "$(awk -v x="$down" 'BEGIN{print x/1000}')" "$loss" \
    "$(field captured)" "$(field counted)" "$(field duplicates_found)" "$(field quarantined)" "$(field pending)" \
    "$(field lost)" "$(field double_counted)" "$drain" "$goodput" "$ratio" "$(field wire_bytes)" "$payload" "$(field retries)"
  echo "  $json"
  # 5: lost or counted twice. 6 (pending at the deadline) is reported, not a failure.
  [[ $rc -eq 5 ]] && exit 5
  [[ $rc -eq 0 || $rc -eq 6 ]] || { cat "$work/fieldtest.err" >&2; exit "$rc"; }
  exit 0
fi

cd "$(dirname "$0")/.."
short=0
[[ "${1:-}" == "--short" ]] && short=1

if [[ $(id -u) -ne 0 ]]; then
  echo "netns-loss: skipped: not running as root (network namespaces, tc and nftables need root)"
  exit 0
fi
for tool in ip tc nft unshare; do
  if ! command -v "$tool" >/dev/null; then
    echo "netns-loss: installing iproute2 nftables util-linux ($tool missing)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables util-linux ethtool >/dev/null
    break
  fi
done
if ! unshare -n true; then
  echo "netns-loss: FAILED: running as root but unshare -n (a network namespace) is refused" >&2
  exit 1
fi
if ! unshare -n sh -c 'ip link set lo up && tc qdisc add dev lo root handle 1: htb default 30 && nft add table inet probe' ; then
  echo "netns-loss: FAILED: running as root but htb or nftables cannot be set up in a namespace" >&2
  exit 1
fi

if [[ -z "${APOYO_BIN:-}" ]]; then
  cargo build -q -p apoyo-cli
  APOYO_BIN=$PWD/target/debug/apoyo
fi
export APOYO_BIN

if [[ $short -eq 1 ]]; then
  sizing=(2 3 4096 150s)
else
  sizing=(3 8 16384 15m)
fi
# name up(bit/s) down(bit/s) loss%: Android emulator EDGE and GPRS; ATC "Edge - Lossy" and
# "2G - Developing Rural"; 30 % random drops on an otherwise fast link.
links=(
  "edge 118400 236800 0"
  "gprs 40000 80000 0"
  "atc-edge-lossy 200000 240000 1"
  "atc-2g-developing-rural 18000 20000 2"
  "drops-30pct 100000000 100000000 30"
)
failed=0
seed=${APOYO_NETNS_SEED:-2026}
for l in "${links[@]}"; do
  read -r name up down loss <<<"$l"
  if ! unshare -n "$0" --inner "$name" "$up" "$down" "$loss" "${sizing[@]}" "$seed"; then
    echo "netns $name: FAILED" >&2
    failed=1
  fi
done
exit $failed
