"""`loxi-plan`: the operator's window into the compiler (dry-run, check, validate, render, graph, show).

Not built yet: this release ships the plugin. The commands are tracked in the
project's issues; until then this says so instead of pretending.
"""

from __future__ import annotations

import sys

COMING = ("dry-run", "check", "validate", "render", "graph", "show")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(
        "loxi-plan: not implemented yet in this release.\n"
        f"Coming: {', '.join(COMING)} (the same compile → observe → diff engine as loxi-cni, without side effects).",
        file=sys.stderr,
    )
    sys.exit(2 if args else 0)


if __name__ == "__main__":
    main()
