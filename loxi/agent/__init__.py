"""loxi-agent, the node daemon that answers loxi-cni calls, and the wire format it speaks.

Nothing is imported here: the thin client imports `loxi.agent.protocol` on every pod.
"""
