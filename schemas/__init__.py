"""The JSON Schemas shipped with loxi-cni, loadable by file name.

They are data files inside this package so the plugin, `loxi-plan validate` and
CI all check confs against the very same documents.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent


@cache
def schema_bytes(name: str) -> bytes:
    return (SCHEMA_DIR / name).read_bytes()


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(schema_bytes(name))
