"""What loxi-cni has left on a node (veths, stores, locks) and which of it is live.

Read by `loxi-plan show` and by the agent's reconciler.
"""
