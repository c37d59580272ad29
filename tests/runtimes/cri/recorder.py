"""A chained CNI plugin that records what the CRI plugin sends, and changes nothing.

Placed last in a test's conflist, it is executed with the very environment
loxi-cni got (libcni gives every plugin of a list the same CNI_ARGS, CNI_NETNS
and container id) and with the list's cached result as prevResult on DEL, the
same one loxi-cni got; so what it records (the CNI_* variables, whether a
prevResult came, runtimeConfig) is what loxi-cni saw. On ADD it prints its
prevResult back unchanged, as a chained plugin must.
"""

from __future__ import annotations

SCRIPT = r"""#!/usr/bin/python3 -I
import json, os, sys, time
command = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.read()
if command == "VERSION":
    print(json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]}))
    sys.exit(0)
conf = json.loads(raw)
record = {
    "command": command,
    "env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")},
    "prevResult": "prevResult" in conf,
    "runtimeConfig": conf.get("runtimeConfig"),
    "time": time.time(),
}
name = "%d-%d.json" % (time.time_ns(), os.getpid())
with open(os.path.join(conf["recordDir"], name), "w") as handle:
    json.dump(record, handle)
if command == "ADD":
    sys.stdout.write(json.dumps(conf["prevResult"]))
"""

NAME = "loxi-cri-record"
