"""`python -m loxi.install`: loxi-plan's install and uninstall subcommands on their own."""

import sys

from loxi.install.cli import main

sys.exit(main())
