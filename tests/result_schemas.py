"""Validate CNI documents against the schemas shipped in `schemas/`.

`validate_result(doc, version)` checks an ADD result against the schema of the
version it claims to be; `validate_error(doc)` checks an error document.
Both raise `jsonschema.ValidationError` with the offending path.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

from schemas import load_schema

RESULT_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def result_schema_name(version: str) -> str:
    if version not in RESULT_VERSIONS:
        raise ValueError(f"no result schema for CNI version {version!r}")
    return f"result-{version}.schema.json"


def validate_result(doc: dict[str, Any], version: str) -> None:
    """Raise if `doc` is not a valid ADD result of CNI `version`."""
    error = jsonschema.exceptions.best_match(_validator(result_schema_name(version)).iter_errors(doc))
    if error is not None:
        raise error


def validate_error(doc: dict[str, Any]) -> None:
    """Raise if `doc` is not a valid CNI error document."""
    error = jsonschema.exceptions.best_match(_validator("error.schema.json").iter_errors(doc))
    if error is not None:
        raise error
