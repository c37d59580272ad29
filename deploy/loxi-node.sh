#!/bin/sh
# loxi-node install | run — the DaemonSet's entry point.
#   install: copy the image's Python runtime to the host (/opt/loxi/runtime-<id>, once per image),
#            then `loxi-plan install` with that interpreter, so the launcher's #! line and sys.path
#            name files that exist on the host; the conflist gets the node's pod CIDR.
#   run:     loxi-agent on /run/loxi/agent.sock, and install again every LOXI_REINSTALL_SECONDS
#            (files are rewritten only when they differ, so this is a no-op while nothing changed).
set -eu

BIN_DIR=/host/opt/cni/bin
CONF_DIR=/host/etc/cni/net.d
TEMPLATE="${LOXI_TEMPLATE:-loxilight}"
RUNTIME_ID="$(python3 -c 'import importlib.metadata as m, sys; print(m.version("loxi-cni") + "-py" + "".join(map(str, sys.version_info[:3])))')"
RUNTIME="/opt/loxi/runtime-${RUNTIME_ID}"

copy_runtime() {
  [ -x "$RUNTIME/bin/python3" ] && return 0
  tmp="$(mktemp -d /opt/loxi/.runtime.XXXXXX)"
  cp -a /usr/local/. "$tmp/"
  mv "$tmp" "$RUNTIME"   # whole or not at all: a running launcher never sees a half copy
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
}

case "${1:-run}" in
  install)
    install
    ;;
  run)
    # /healthz and /readyz for the kubelet's probes, /metrics for Prometheus, on the node's loopback
    loxi-agent --socket /run/loxi/agent.sock --metrics-address "${LOXI_METRICS_ADDRESS:-127.0.0.1:9617}" \
      --log-file /var/log/loxi/agent.log &
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
    echo "usage: loxi-node install|run" >&2
    exit 2
    ;;
esac
