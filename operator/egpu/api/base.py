"""The base every API model shares, and the way models carry CRD-only schema facts.

Models are the single source of truth for the CRDs: CEL rules, list semantics and
the defaults of always-present nested objects live next to the fields they constrain,
and `egpu.api.schema` turns the pydantic JSON schema into a structural CRD schema.

pydantic checks what one field can check (types, bounds, patterns, label keys); the
cross-field CEL rules run in the API server only, so objects read from the cluster
have passed both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# Reasons the API server accepts on a rule; it defaults to FieldValueInvalid.
RuleReason = Literal["FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden"]


@dataclass(frozen=True)
class Rule:
    """One CEL rule (`x-kubernetes-validations` entry) with the message a user reads.

    `message_expression` (CEL, a string) names the offending item, e.g. the container;
    the server falls back to `message` when it cannot evaluate it.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: RuleReason | None = None
    message_expression: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.message_expression is not None:
            out["messageExpression"] = self.message_expression
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def rules_extra(*rules: Rule) -> dict[str, Any]:
    """`json_schema_extra` for a field whose own value the rules check (`self` is the field)."""
    return {"x-kubernetes-validations": [r.to_schema() for r in rules]}


def _extend_model_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    if getattr(cls, "preserve_unknown_fields", False):
        schema["x-kubernetes-preserve-unknown-fields"] = True
    rules: tuple[Rule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.to_schema() for r in rules]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        json_schema_extra=_extend_model_schema,
    )

    # Object-level CEL rules; `self` is this object.
    cel_rules: ClassVar[tuple[Rule, ...]] = ()
    # Keep fields the model does not name (with extra="allow"): a pass-through object.
    preserve_unknown_fields: ClassVar[bool] = False

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def defaulted_object(model: type[ApiModel], description: str) -> Any:
    """A nested object that is always present: its CRD default is the model's own defaults.

    pydantic puts no default_factory into the JSON schema, so the default is spelled out.
    It must be complete: the API server checks a default against the CEL rules before
    it would fill in the children's defaults, so `{}` would fail any rule that reads them.
    """
    return Field(
        default_factory=model,
        description=description,
        json_schema_extra={"default": model().to_wire()},
    )


def list_map(*keys: str) -> dict[str, Any]:
    """A list whose items are identified by `keys`: duplicates are refused, SSA merges by key."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}
LIST_ATOMIC: dict[str, Any] = {"x-kubernetes-list-type": "atomic"}


def validation_message(exc: ValidationError | ValueError, prefix: str = "spec") -> str:
    """One line per bad field, in the wire's camelCase, for status conditions and Events."""
    if not isinstance(exc, ValidationError):
        return str(exc)[:1024]
    parts = []
    for error in exc.errors():
        path = ".".join(to_camel(p) if isinstance(p, str) else f"[{p}]" for p in error["loc"])
        parts.append(f"{prefix}.{path}: {error['msg']}".replace(".[", "["))
    return "; ".join(parts)[:1024]
