#!/bin/sh
# loxi-node install | run | uninstall — the DaemonSet's entry point.
#   install:   copy the image's Python runtime (/usr/lib/loxi/runtime, self-contained) to the host as
#              /opt/loxi/runtime-<id> (once per image: <id> = version, Python version, content hash),
#              then `loxi-plan install` with that interpreter, so the launcher's #! line and sys.path
#              name files that exist on the host; the conflist gets the node's pod CIDR. Then every
#              other runtime-* that no launcher names and no process maps (hostPID) is removed.
#   run:       loxi-agent on /run/loxi/agent.sock, and install again every LOXI_REINSTALL_SECONDS
#              (files are rewritten only when they differ, so this is a no-op while nothing changed;
#              an old runtime still in use at upgrade time goes on a later pass).
#   uninstall: `loxi-plan uninstall` (exactly what install wrote), then the runtimes in /opt/loxi.
set -eu

BIN_DIR=/host/opt/cni/bin
CONF_DIR=/host/etc/cni/net.d
TEMPLATE="${LOXI_TEMPLATE:-loxilight}"
IMAGE_RUNTIME=/usr/lib/loxi/runtime
RUNTIME_ID="$(cat "$IMAGE_RUNTIME/RUNTIME_ID")"
RUNTIME="/opt/loxi/runtime-${RUNTIME_ID}"
PY="$IMAGE_RUNTIME/bin/python3"

copy_runtime() {
  [ -e "$RUNTIME/RUNTIME_ID" ] && return 0
  tmp="$(mktemp -d /opt/loxi/.runtime.XXXXXX)"
  cp -a "$IMAGE_RUNTIME/." "$tmp/"
  chmod 0755 "$tmp"
  mv "$tmp" "$RUNTIME"   # whole or not at all: a running launcher never sees a half copy
}

# Does a process map a file of $1 (its interpreter, an extension module)? Needs hostPID to see the node's.
in_use() {
  for maps in /proc/[0-9]*/maps; do
    grep -qsF "$1/" "$maps" && return 0
  done
  return 1
}

prune_runtimes() {
  for old in /opt/loxi/runtime-* /opt/loxi/.runtime.*; do
    [ -d "$old" ] && [ "$old" != "$RUNTIME" ] || continue
    if grep -qsF "$old/" "$BIN_DIR/loxi-cni" "$BIN_DIR/loxi-cni-inprocess"; then continue; fi
    sleep 1  # a call that read the old launcher just before it was replaced has mapped its interpreter now
    if in_use "$old"; then
      echo "loxi-node: keeping $old: a process still runs from it" >&2
      continue
    fi
    gone="/opt/loxi/.gone.$(basename "$old")"
    mv "$old" "$gone" && rm -rf "$gone" && echo "loxi-node: removed the unused runtime $old"
  done
}

install() {
  copy_runtime
  cidr="$(node-pod-cidr)"
  vars=""
  for v in ${LOXI_TEMPLATE_VARS:-}; do vars="$vars --var $v"; done
  # shellcheck disable=SC2086
  "$RUNTIME/bin/python3" "$RUNTIME/bin/loxi-plan" install \
    --cni-bin-dir "$BIN_DIR" --cni-conf-dir "$CONF_DIR" \
    --template "$TEMPLATE" --node-pod-cidr "$cidr" $vars
  prune_runtimes
}

case "${1:-run}" in
  install)
    install
    ;;
  uninstall)
    "$PY" "$IMAGE_RUNTIME/bin/loxi-plan" uninstall --cni-bin-dir "$BIN_DIR"
    RUNTIME=/nonexistent prune_runtimes
    ;;
  run)
    # /healthz and /readyz for the kubelet's probes, /metrics for Prometheus, on the node's loopback
    "$PY" "$IMAGE_RUNTIME/bin/loxi-agent" --socket /run/loxi/agent.sock \
      --metrics-address "${LOXI_METRICS_ADDRESS:-127.0.0.1:9617}" --log-file /var/log/loxi/agent.log &
    agent=$!
    trap 'kill -TERM "$agent" 2>/dev/null; wait "$agent"; exit 0' TERM INT
    while kill -0 "$agent" 2>/dev/null; do
      sleep "${LOXI_REINSTALL_SECONDS:-60}" &
      wait $! || true
      install >/dev/null || echo "loxi-node: periodic install failed (will retry)" >&2
    done
    wait "$agent"
    ;;
  *)
    echo "usage: loxi-node install|run|uninstall" >&2
    exit 2
    ;;
esac
