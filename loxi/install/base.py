"""What every module of `loxi-plan install` shares: the names and places it writes, and its one error."""

from __future__ import annotations

PROG = "loxi-plan"
PLUGIN_NAME = "loxi-cni"
INPROCESS_NAME = "loxi-cni-inprocess"  # the launcher's name beside the shim (shim/loxi-shim.c: LAUNCHER_NAME)
SHIM_NAME = "loxi-cni-shim"  # where scripts/setup and the image put the built shim: <sys.prefix>/bin
PLUGIN_TYPE = "loxi-cni"
DIST_NAME = "loxi-cni"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CONF_NAME = "10-loxi.conflist"
MANIFEST_NAME = ".loxi-cni.manifest.json"
MANIFEST_VERSION = 1
LAUNCHER_MODE = 0o755
CONF_MODE = 0o644
MANIFEST_MODE = 0o644


class InstallError(Exception):
    """What went wrong, as the one line the operator sees."""
