"""`python -m loxi.plugin`: the same as the installed loxi-cni."""

from loxi.plugin.entry import main

main()
