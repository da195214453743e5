"""Reading a dataclass back from the plain mapping a model file stores (ArchSpec, Preprocessing)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def known_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """data, once it is a mapping whose keys are all fields of the dataclass cls.

    ValueError "WHAT: ..." naming the first unknown key (and the known ones), or saying data is no mapping.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a mapping of fields, got {type(data).__name__}")
    known = {field.name for field in fields(cls)}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise ValueError(f"{what}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return data
