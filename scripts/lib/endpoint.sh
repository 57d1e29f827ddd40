# shellcheck shell=bash
# Sourced by scripts/test-c.sh, scripts/test-java.sh and scripts/test-swift.sh: starts one real
# reference endpoint process (`apoyo serve --dev` on a free loopback port, with
# examples/processes.json) and stops it. Run from the repository root.
#
#   source scripts/lib/endpoint.sh
#   trap 'endpoint_stop; rm -rf "$work"' EXIT
#   endpoint_start "$target/debug/apoyo" "$work"
#
# endpoint_start sets:
#   endpoint_url         http://127.0.0.1:PORT
#   endpoint_pubkey      the endpoint's 32-byte seal key in hex (endpoint.pub is
#                        `apoyo-seal-pub-v1 <hex>`)
#   endpoint_ine_root    its INE root as the line INE provisions (`apoyo-ine-root-v1 <hex>`),
#                        as an app passes it
#   endpoint_other_root  another key folder's root: the wrong one (nothing may be deleted
#                        under it)

endpoint_pid=""

# endpoint_start APOYO WORK: keys in WORK/keys (and WORK/other-keys), database WORK/ine.db.
endpoint_start() {
  local apoyo=$1 work=$2
  echo "== starting the reference endpoint (apoyo serve --dev)"
  "$apoyo" endpoint-keygen --out "$work/keys" >/dev/null
  "$apoyo" serve --db "$work/ine.db" --listen 127.0.0.1:0 --key "$work/keys/endpoint.key" \
    --processes examples/processes.json --dev >"$work/serve.out" 2>"$work/serve.err" &
  endpoint_pid=$!
  endpoint_url=""
  for _ in $(seq 1 100); do
    endpoint_url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -n1)
    [[ -n "$endpoint_url" ]] && break
    kill -0 "$endpoint_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n "$endpoint_url" ]] || { echo "the endpoint did not start" >&2; exit 1; }
  echo "endpoint at $endpoint_url"
  endpoint_pubkey=$(awk '{print $NF}' "$work/keys/endpoint.pub")
  endpoint_ine_root=$(head -n1 "$work/keys/ine-root.pub")
  "$apoyo" endpoint-keygen --out "$work/other-keys" >/dev/null
  endpoint_other_root=$(head -n1 "$work/other-keys/ine-root.pub")
}

# Stops the endpoint started by endpoint_start, if any (safe to call twice).
endpoint_stop() {
  if [[ -n "$endpoint_pid" ]]; then
    kill "$endpoint_pid" 2>/dev/null || true
    wait "$endpoint_pid" 2>/dev/null || true
    endpoint_pid=""
  fi
}
