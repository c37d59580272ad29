"""What `loxi-plan`'s subcommands share: one way to declare one."""

from __future__ import annotations

import argparse
from typing import Any


def add_subcommand(subparsers: Any, name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
    """A subcommand whose help is its description and whose epilog (examples) keeps its line breaks."""
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
