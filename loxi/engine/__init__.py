"""The engine: every CNI command and every `loxi-plan` report runs one pipeline.

`pipeline` turns a request into (desired graph, observed snapshot, plan); the
commands differ only in what they do with the plan: `add` executes it, `check`
turns it into drift, `delete` and `gc` execute a teardown, `status` asks the
kernel and the IPAM store whether an ADD could succeed. `commands` imports them
all (loxi-agent preloads it); loxi-cni imports only the command it runs.

Nothing is imported here, so `loxi.engine.phases` (the agent's timing hook)
stays as cheap as a module of built-ins.
"""
