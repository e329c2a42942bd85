"""Check one value against its declared spec (type, items, choices, bounds, closed sets of names).

Yields (key, message) pairs; the caller adds the file. Templates ("{{ ... }}") are Ansible's to
evaluate and are not checked, nor is an empty value (null).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from kubestrap.schema import SettingSpec

TYPE_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
              list: "a list", dict: "a mapping"}  # fmt: skip


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def type_ok(value: Any, kind: type | None) -> bool:
    if kind is None or value is None or is_template(value):
        return True
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_bounds(key: str, spec: SettingSpec, value: int) -> Iterator[tuple[str, str]]:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None and not low <= value <= high:
        yield key, f"must be from {low} to {high}, got {value}"
    elif low is not None and value < low:
        yield key, f"must be at least {low}, got {value}"
    elif high is not None and value > high:
        yield key, f"must be at most {high}, got {value}"


def _choices(key: str, spec: SettingSpec, value: Any) -> Iterator[tuple[str, str]]:
    if spec.choices and not is_template(value) and value not in spec.choices:
        yield key, f"must be one of {', '.join(str(c) for c in spec.choices)}, got {value!r}"


def check(key: str, value: Any, spec: SettingSpec) -> Iterator[tuple[str, str]]:
    """Problems of *value* written for the setting *key* (nothing when it fits its spec)."""
    if value is None or is_template(value):
        return
    if not type_ok(value, spec.kind):
        assert spec.kind is not None
        yield key, f"must be {TYPE_NAMES[spec.kind]}, got {describe(value)}"
        return
    if isinstance(value, list):
        yield from _check_list(key, value, spec)
    elif isinstance(value, dict) and spec.options is not None:
        yield from _check_names(key, value, spec.options)
    else:
        if _is_int(value):
            yield from _int_bounds(key, spec, value)
        yield from _choices(key, spec, value)


def _check_list(key: str, value: list[Any], spec: SettingSpec) -> Iterator[tuple[str, str]]:
    if spec.minimum is not None and len(value) < spec.minimum:
        plural = "s" if spec.minimum != 1 else ""
        yield key, f"must list at least {spec.minimum} item{plural}, got {len(value)}"
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if item is None or is_template(item):
            continue
        if not type_ok(item, spec.elements):
            assert spec.elements is not None
            yield where, f"must be {TYPE_NAMES[spec.elements]}, got {describe(item)}"
            continue
        yield from _choices(where, spec, item)


def _check_names(key: str, value: dict[Any, Any], options: dict[str, SettingSpec]) -> Iterator[tuple[str, str]]:
    """A mapping whose spec lists its names (e.g. addons_enabled): a closed set, each name typed."""
    for sub, item in value.items():
        where = f"{key}.{sub}"
        spec = options.get(str(sub))
        if spec is None:
            hint = difflib.get_close_matches(str(sub), list(options), n=1, cutoff=0.6)
            tail = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(options)})"
            yield where, f"unknown name{tail}"
            continue
        yield from check(where, item, spec)
