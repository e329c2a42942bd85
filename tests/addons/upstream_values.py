"""Check rendered Helm values against the upstream chart's own values.yaml and values.schema.json.

A chart directory (see /work/shared/reference/charts/<chart>/) holds VERSION (`fetched: <version>`),
values.yaml, maybe values.schema.json, maybe subcharts/<name>/values.yaml (+ values.schema.json).
check_values(rendered, chart_dir) returns one message per problem, each starting with a dotted key path:
- every rendered key must exist in upstream values.yaml, or be documented there as a commented-out key
  (then nothing below it is checked); nothing is checked below an upstream empty map or null, a map marked
  `@schema additionalProperties:true`, or a FREE_FORM key; list items are checked against upstream's first
  item when that is a non-empty map; keys under a subchart's key are checked against that subchart's
  values.yaml merged with the parent's section for it (plus `global` and `enabled`);
- a scalar where upstream has a map, or a map/list where upstream has a non-null scalar, is a problem;
- values.schema.json (chart and subcharts) validates the rendered values merged into the chart defaults,
  as helm does (it validates the coalesced values, so keys the defaults provide count as present).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# Keys whose value is free-form though upstream's values.yaml shows example content instead of an empty map
# and has no `@schema additionalProperties:true` mark. Keep this short; each entry says why.
FREE_FORM = frozenset(
    {
        # label/annotation/selector maps: their keys are the user's label and annotation names
        "annotations", "labels", "podAnnotations", "podLabels", "nodeSelector",
        "resources",  # a core/v1 ResourceRequirements; upstream examples often show requests only
        "meshConfig",  # istiod: "See https://istio.io/docs/reference/config/istio.mesh.v1alpha1/ for all available options"
        "receivers",  # kube-prometheus-stack alertmanager.config: Alertmanager's own receiver list, passed through as is
    }
)  # fmt: skip

# The istio charts wrap their defaults in this key; users set the same keys at the top level.
ISTIO_DEFAULTS = "_internal_defaults_do_not_set"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def fetched_version(chart_dir: Path) -> str:
    """The chart version the reference data was taken at (VERSION's `fetched:` line, else its first word)."""
    text = (chart_dir / "VERSION").read_text()
    match = re.search(r"^fetched:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else text.split()[0]


KEY_LINE = re.compile(r"^(?P<indent> *)(?P<hash>#+ ?)?(?P<inner> *)(?P<key>[A-Za-z_][A-Za-z0-9_-]*):(?: |$)")
FREE_MARK = re.compile(r"additionalProperties: ?true")


def documented(text: str) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """Key paths that values.yaml documents without setting them, and maps it marks free-form.

    Charts document optional keys as commented-out lines at the key's place (cilium `# hostNamespaceOnly:
    false` under socketLB, grafana `# adminPassword: strongpassword`); a line-by-line indentation walk
    gives their paths. Free-form: a key whose comment block carries `@schema ... additionalProperties:true`
    (helm-values-schema annotations, e.g. loki's limits_config). List items are not descended into.
    """
    stack: list[tuple[int, str]] = []
    commented: set[tuple[str, ...]] = set()
    free: set[tuple[str, ...]] = set()
    marked = False
    for line in text.splitlines():
        match = KEY_LINE.match(line)
        if not match:
            stripped = line.strip()
            if stripped.startswith("#"):
                marked = marked or bool(FREE_MARK.search(stripped))
            elif stripped:
                marked = False
            continue
        is_comment = match["hash"] is not None
        indent = len(match["indent"]) + (len(match["inner"]) if is_comment else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), match["key"])
        if path[0] == ISTIO_DEFAULTS:
            path = path[1:]
        if is_comment:
            commented.add(path)
        else:
            if marked:
                free.add(path)
            marked = False
        stack.append((indent, match["key"]))
    return commented, free


def merge(base: Any, over: Any) -> Any:
    """Helm's coalescing of values: maps merge recursively, a null removes the key, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def merge_defaults(base: Any, over: Any) -> Any:
    """Two sets of defaults merged for key lookups: like merge() but a null is kept (it declares a key)."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return base if over is None else over
    return {**base, **{k: merge_defaults(base.get(k), v) for k, v in over.items()}}


def chart_defaults(chart_dir: Path) -> dict[str, Any]:
    """Upstream values.yaml with the istio wrapper unwrapped to the top level, for key lookups."""
    values = load_yaml(chart_dir / "values.yaml") or {}
    if isinstance(values.get(ISTIO_DEFAULTS), dict):
        values = merge_defaults({k: v for k, v in values.items() if k != ISTIO_DEFAULTS}, values[ISTIO_DEFAULTS])
    return values


def subcharts(chart_dir: Path) -> dict[str, Path]:
    """values key -> subchart directory; the reference data names each directory by the subchart's values key
    (its alias if it has one, e.g. loki's rollout_operator), so frrk8s (metallb's own switch) is not frr-k8s."""
    folder = chart_dir / "subcharts"
    return {sub.name: sub for sub in sorted(folder.iterdir()) if sub.is_dir()} if folder.is_dir() else {}


class Docs:
    """What values.yaml files document beyond their parsed content: commented-out keys and free-form maps."""

    def __init__(self) -> None:
        self.commented: set[tuple[str, ...]] = set()
        self.free: set[tuple[str, ...]] = set()

    def add(self, values_file: Path, prefix: tuple[str, ...] = ()) -> None:
        if values_file.exists():
            commented, free = documented(values_file.read_text())
            self.commented |= {prefix + p for p in commented}
            self.free |= {prefix + p for p in free}


def check_keys(value: Any, upstream: Any, docs: Docs, path: str = "", keys: tuple[str, ...] = ()) -> list[str]:
    """Unknown keys and type clashes of value against the upstream defaults node at the same path."""
    where = path or "<root>"
    if isinstance(upstream, dict):
        if value is None:
            return []
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} where the chart has a map"]
        if not upstream or keys in docs.free or (keys and keys[-1] in FREE_FORM):
            return []
        errors: list[str] = []
        for key, sub in value.items():
            sub_path, sub_keys = (f"{path}.{key}" if path else str(key)), (*keys, str(key))
            if key in upstream:
                errors += check_keys(sub, upstream[key], docs, sub_path, sub_keys)
            elif sub_keys not in docs.commented:
                errors.append(f"{sub_path}: unknown key (not in upstream values.yaml)")
        return errors
    if isinstance(upstream, list):
        if value is None:
            return []
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} where the chart has a list"]
        if upstream and isinstance(upstream[0], dict) and upstream[0]:
            return [e for i, item in enumerate(value) for e in check_keys(item, upstream[0], docs, f"{path}[{i}]", keys)]
        return []
    if upstream is not None and isinstance(value, (dict, list)):
        return [f"{where}: {type(value).__name__} where the chart has a {type(upstream).__name__}"]
    return []


def check_schema(values: dict[str, Any], defaults: dict[str, Any], schema_file: Path, prefix: str = "") -> list[str]:
    """values.schema.json errors of values coalesced into defaults, with dotted paths (below prefix)."""
    if not schema_file.exists():
        return []
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator = validator_class(schema)
    errors = []
    for error in sorted(validator.iter_errors(merge(defaults, values)), key=lambda e: [str(p) for p in e.absolute_path]):
        dotted = prefix
        for part in error.absolute_path:
            dotted += f"[{part}]" if isinstance(part, int) else f".{part}" if dotted else str(part)
        errors.append(f"{dotted or '<root>'}: {error.message} (values.schema.json)")
    return errors


def check_values(values: dict[str, Any], chart_dir: Path) -> list[str]:
    """Every problem of the rendered values of one release against the upstream chart in chart_dir."""
    upstream = chart_defaults(chart_dir)
    docs = Docs()
    docs.add(chart_dir / "values.yaml")
    subs = subcharts(chart_dir)
    allowed = dict(upstream)
    for key, sub_dir in subs.items():
        docs.add(sub_dir / "values.yaml", (key,))
        allowed[key] = {"global": {}, "enabled": True, **merge_defaults(chart_defaults(sub_dir), upstream.get(key) or {})}
    errors = check_keys(values, allowed, docs)
    for key, sub_dir in subs.items():
        if isinstance(values.get(key), dict):
            sub_defaults = merge(load_yaml(sub_dir / "values.yaml") or {}, upstream.get(key) or {})
            errors += check_schema(values[key], sub_defaults, sub_dir / "values.schema.json", key)
    errors += check_schema(values, load_yaml(chart_dir / "values.yaml") or {}, chart_dir / "values.schema.json")
    return errors
