"""The I/O side of loxi-cni: netlink, namespaces, IPAM, locks.

Importing it registers pyroute2 without its package `__init__`
(`intent.lean_import`; see applier.netlink), so every module here, and any
`from pyroute2... import` after `import applier...`, loads just the pyroute2
modules it names.
"""

from intent.lean_import import register_lean_package

register_lean_package("pyroute2")
