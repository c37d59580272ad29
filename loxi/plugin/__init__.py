"""The per-pod front end: what the runtime executes as loxi-cni (thin client, in-process plugin, command log).

Nothing is imported here: the thin client's cold path pays for every module it loads.
"""
