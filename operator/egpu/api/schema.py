"""pydantic JSON schema -> a structural OpenAPI v3 schema the API server accepts.

The traps this avoids (each makes the API server refuse the CRD or prune data):
`$ref`s are inlined; `Optional[X]` becomes X rather than `anyOf: [X, null]`;
`additionalProperties` never sits beside `properties`; a free-form object says
`x-kubernetes-preserve-unknown-fields`; a numeric `exclusiveMinimum` (JSON Schema
2020) becomes OpenAPI v3's `minimum` + boolean; titles and `default: null` go.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# The JSONSchemaProps keys a CRD may carry (apiextensions.k8s.io/v1).
_ALLOWED_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "default",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "items",
        "properties",
        "additionalProperties",
        "required",
        "anyOf",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
_DROPPED_KEYS = frozenset({"title", "$defs"})
_VALIDATIONS = "x-kubernetes-validations"


class SchemaError(ValueError):
    """The model produced something a structural schema cannot express."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's structural schema, every `$ref` inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.get("$defs", {})
    return _convert(raw, defs, where=model.__name__)


def _resolve(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    """Replace `$ref` and `anyOf [X, null]` by X, keeping the sibling keys (they win)."""
    siblings = {k: v for k, v in node.items() if k not in ("$ref", "anyOf")}
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = _resolve(defs[name], defs, where)
    elif "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        if len(options) != 1:
            raise SchemaError(f"{where}: a union other than Optional[X] is not structural")
        target = _resolve(options[0], defs, where)
    else:
        return dict(node)
    if siblings.get("default", 0) is None:
        del siblings["default"]
    merged = {**target, **siblings}
    # Rules of a type and rules of the field that uses it both apply.
    if _VALIDATIONS in target and _VALIDATIONS in siblings:
        merged[_VALIDATIONS] = [*target[_VALIDATIONS], *siblings[_VALIDATIONS]]
    return merged


def _convert(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    node = _resolve(node, defs, where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {
                name: _convert(sub, defs, f"{where}.{name}") for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _convert(value, defs, f"{where}[]")
        elif key == "additionalProperties":
            if "properties" in node:
                continue  # extra="forbid"/"allow" on a model: pruning and the class decide
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _convert(value, defs, f"{where}{{}}")
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default" and value is None:
            continue
        elif key == _VALIDATIONS:
            out[key] = [_rule_order(rule) for rule in value]
        elif key in _ALLOWED_KEYS:
            out[key] = value
        else:
            raise SchemaError(f"{where}: {key!r} has no place in a CRD schema")
    if "properties" in out or out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{where}: every schema node needs a type")
    return _ordered(out)


# A stable, readable key order in the YAML: what it is, then its constraints, then children.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "x-kubernetes-int-or-string",
    "anyOf",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "required",
    "items",
    "additionalProperties",
    "properties",
    "x-kubernetes-validations",
)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _rule_order(rule: dict[str, str]) -> dict[str, str]:
    order = ("rule", "message", "messageExpression", "fieldPath", "reason")
    return {k: rule[k] for k in order if k in rule}


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path (`[]` for list items, `{}` for map values)."""
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += walk(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found
