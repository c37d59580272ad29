"""`python -m loxi.agent`: the same as the installed loxi-agent."""

from loxi.agent.daemon import main

main()
