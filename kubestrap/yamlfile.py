"""Strict, bounded YAML loading: duplicate keys are errors, and errors say file and line.

Whatever the bytes, loading ends with data or one YamlError line, in bounded time and memory:
files over MAX_BYTES are refused before they are read, text must be UTF-8 (the offending byte is
named), and aliases may not expand the document by more than MAX_ALIAS_EXPANSION nodes
("billion laughs") or refer to a node that contains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024
MAX_ALIAS_EXPANSION = 10_000


class YamlError(Exception):
    """A YAML file that cannot be used; the message names the file and line."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one) and
    remembers the anchor names of the document (the composer forgets them at its end)."""

    anchor_names: dict[int, str]

    def compose_document(self) -> yaml.Node | None:
        self.get_event()  # DocumentStartEvent
        node = self.compose_node(None, None)  # type: ignore[arg-type]
        self.get_event()  # DocumentEndEvent
        self.anchor_names = {id(n): name for name, n in self.anchors.items()}
        self.anchors = {}
        return node


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor": merged by construct_mapping; own keys may override merged ones
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value (a name), not a list or mapping", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    try:
        return int(yaml.constructor.SafeConstructor.construct_yaml_int(loader, node))
    except ValueError:
        # int() refuses thousands of digits (the CVE-2020-10735 limit); no setting needs them
        raise yaml.constructor.ConstructorError(
            None, None, f"number too long ({len(str(node.value))} characters); no setting takes such a number",
            node.start_mark,
        ) from None


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_aliases(root: yaml.Node, anchor_names: dict[int, str]) -> None:
    """Refuse an alias inside the node it names, and aliases that expand the document too much.

    The composer gives an alias the very node of its anchor, so the document as the program sees
    it is this graph unrolled into a tree: its size is counted without building it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise yaml.composer.ComposerError(
                None, None, f"YAML alias *{anchor_names.get(key, '?')} refers to a node that contains it; "
                "write the value out", node.start_mark)
        open_nodes.add(key)
        total = 1 + sum(size(child) for child in _children(node))
        open_nodes.discard(key)
        sizes[key] = total
        return total

    expanded = size(root)
    if expanded - len(sizes) > MAX_ALIAS_EXPANSION:
        raise YamlError(f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION} extra values "
                        "(a \"billion laughs\" document?); write the values out without aliases")


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise YamlError(f"{path}: larger than 1 MiB; a variables file this big is not a setting "
                        "(split it, or remove what does not belong in the inventory)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlError(f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                        f"(line {line}); save the file as UTF-8") from None


def _parse(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, loader.anchor_names)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def load(path: Path) -> Any:
    """Load one YAML document from *path*; raise YamlError with file:line on any problem."""
    text = _read_text(path)
    try:
        return _parse(text)
    except YamlError as exc:
        raise YamlError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(_one_line(f"{path}{where}: {problem}")) from None
    except yaml.reader.ReaderError as exc:
        raise YamlError(_one_line(f"{path}:{_line_of(text, exc.position)}: unacceptable character "
                                  f"#x{exc.character:04x} ({exc.reason}); remove it")) from None
    except yaml.YAMLError as exc:
        raise YamlError(_one_line(f"{path}: invalid YAML: {exc}")) from None
    except RecursionError:
        raise YamlError(f"{path}: nested too deeply (lists or mappings inside each other hundreds of "
                        "levels deep); flatten the value") from None


def _one_line(message: str) -> str:
    return " ".join(message.split())


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML was built with it


def load_own(path: Path) -> Any:
    """Load one of this repository's own YAML files (role argument specs, playbooks): libyaml's safe loader, about
    ten times as fast as the strict one (every command reads the 36 argument specs). yamllint keeps these files
    free of duplicate keys; inventories and other user files go through load()."""
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_FAST_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise YamlError(_one_line(f"{path}{where}: {exc.problem or exc.context or 'invalid YAML'}")) from None
    except yaml.YAMLError as exc:
        raise YamlError(_one_line(f"{path}: invalid YAML: {exc}")) from None
