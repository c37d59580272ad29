"""`loxi-plan`'s building blocks: the plugin's own compile → observe → diff engine, without the side effects.

Each module has one job (loading a conf, resolving the addresses a plan would
use, building a plan or a check report, rendering it, validating conf files,
rendering conf templates, drawing the graph, taking the node's inventory), so
the CLI in `loxi.plan.cli` is only argument parsing and exit codes.
"""
