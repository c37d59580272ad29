"""Every CNI command the engine serves, in one import: what loxi-agent loads before it listens
(and the installer's probe imports) so that no call pays an import. loxi-cni, one command per
process, imports only the module of the command it runs."""

from __future__ import annotations

from loxi.engine.add import AddOutcome, cmd_add
from loxi.engine.check import cmd_check
from loxi.engine.delete import cmd_del, teardown
from loxi.engine.gc import cmd_gc
from loxi.engine.status import cmd_status

__all__ = ["AddOutcome", "cmd_add", "cmd_check", "cmd_del", "cmd_gc", "cmd_status", "teardown"]
