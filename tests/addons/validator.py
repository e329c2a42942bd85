"""Strict structural checks of rendered custom resources against hand-written field models (models/*.yml).
Chart values are checked against the upstream charts instead (upstream_values.py).

A model node is either
- a type expression string: alternatives joined by "|" among str, int, bool, float, null, map (any
  mapping), any, list (list of anything), list[str], list[int], list[map], enum(A,B,...);
- a mapping: an object whose keys are the only allowed keys, each mapped to a model node;
  the special key `_list_of` instead means "a list whose items follow this node";
  the special key `_required` lists the keys that must be present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MODELS = Path(__file__).resolve().parent / "models"


def _scalar_ok(value: Any, expr: str) -> bool:
    for alt in (a.strip() for a in expr.split("|")):
        if alt == "any":
            return True
        if alt.startswith("enum(") and alt.endswith(")"):
            if isinstance(value, str) and value in [v.strip() for v in alt[5:-1].split(",")]:
                return True
            continue
        if alt == "str" and isinstance(value, str):
            return True
        if alt == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if alt == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if alt == "bool" and isinstance(value, bool):
            return True
        if alt == "null" and value is None:
            return True
        if alt == "map" and isinstance(value, dict):
            return True
        if alt == "list" and isinstance(value, list):
            return True
        if alt.startswith("list[") and isinstance(value, list):
            inner = alt[5:-1]
            if all(_scalar_ok(item, inner) for item in value):
                return True
    return False


def check(value: Any, model: Any, path: str = "") -> list[str]:
    """Return one message per violation, each naming the offending key path."""
    where = path or "<root>"
    if isinstance(model, str):
        return [] if _scalar_ok(value, model) else [f"{where}: {value!r} is not {model}"]
    if not isinstance(model, dict):
        raise TypeError(f"bad model node at {where}: {model!r}")
    if "_list_of" in model:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        errors: list[str] = []
        for index, item in enumerate(value):
            errors += check(item, model["_list_of"], f"{path}[{index}]")
        return errors
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping, got {type(value).__name__}"]
    errors = []
    allowed = {k: v for k, v in model.items() if k != "_required"}
    for key in value:
        sub = f"{path}.{key}" if path else str(key)
        if key not in allowed:
            errors.append(f"{sub}: unknown key (not in the model)")
            continue
        errors += check(value[key], allowed[key], sub)
    for key in model.get("_required", []):
        if key not in value:
            errors.append(f"{(path + '.') if path else ''}{key}: required key missing")
    return errors


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def cr_models() -> dict[tuple[str, str], dict]:
    models = {}
    for path in sorted(MODELS.glob("*.yml")):
        data = load_yaml(path)
        models[(data["apiVersion"], data["kind"])] = data
    return models


METADATA = {
    "_required": ["name"],
    "name": "str",
    "namespace": "str",
    "labels": "map",
    "annotations": "map",
    "finalizers": "list[str]",
}


def check_cr(doc: dict, models: dict[tuple[str, str], dict]) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = models.get(key)
    if model is None:
        return [f"{key[1]}: no model for apiVersion {key[0]!r} kind {key[1]!r}"]
    top: dict[str, Any] = {"apiVersion": "str", "kind": "str", "metadata": METADATA, **model["fields"]}
    top["_required"] = ["apiVersion", "kind", "metadata", *model.get("required", [])]
    errors = check(doc, top)
    if model.get("namespaced") and not (doc.get("metadata") or {}).get("namespace"):
        errors.append(f"{key[1]}/{(doc.get('metadata') or {}).get('name')}: namespaced kind without metadata.namespace")
    return [f"{key[1]}: {e}" for e in errors]
