"""Strict YAML loading: duplicate keys are errors, and errors say file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlError(Exception):
    """A YAML file that cannot be used; the message names the file and line."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path: Path) -> Any:
    """Load one YAML document from *path*; raise YamlError with file:line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"{path}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}: invalid YAML: {exc}") from None
