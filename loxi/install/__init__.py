"""`loxi-plan install` / `uninstall`: put loxi-cni where a runtime finds it, and take it away.

The package's API, for the tests, bench/ and deploy/: base (names, the error),
launcher (rendering and running it, the shim's check), conflist, manifest
(files written atomically and recorded), node (install, uninstall), private
(the private-environment guard), cli (the subcommands).
"""

from loxi.install.base import (
    CONF_MODE,
    DEFAULT_BIN_DIR,
    DEFAULT_CONF_DIR,
    DEFAULT_CONF_NAME,
    INPROCESS_NAME,
    LAUNCHER_MODE,
    MANIFEST_NAME,
    PLUGIN_NAME,
    InstallError,
)
from loxi.install.cli import main, main_install, main_uninstall, register
from loxi.install.conflist import render_conflist, validate_conflist
from loxi.install.launcher import (
    DEPENDENCY_PACKAGES,
    PROJECT_PACKAGES,
    default_shim,
    import_paths,
    render_launcher,
    verify_launcher,
    verify_shim,
)
from loxi.install.manifest import Change, read_manifest
from loxi.install.node import install, uninstall
from loxi.install.private import ALLOW_FLAG, private_environment, require_private_environment

__all__ = [
    "ALLOW_FLAG",
    "CONF_MODE",
    "DEFAULT_BIN_DIR",
    "DEFAULT_CONF_DIR",
    "DEFAULT_CONF_NAME",
    "DEPENDENCY_PACKAGES",
    "INPROCESS_NAME",
    "LAUNCHER_MODE",
    "MANIFEST_NAME",
    "PLUGIN_NAME",
    "PROJECT_PACKAGES",
    "Change",
    "InstallError",
    "default_shim",
    "import_paths",
    "install",
    "main",
    "main_install",
    "main_uninstall",
    "private_environment",
    "read_manifest",
    "register",
    "render_conflist",
    "render_launcher",
    "require_private_environment",
    "uninstall",
    "validate_conflist",
    "verify_launcher",
    "verify_shim",
]
