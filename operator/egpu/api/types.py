"""Value types shared by the kinds: durations, quantities, label keys, names, times of day.

Each type validates in Python the way the API server validates it, and emits the CRD
schema (pattern, bounds, CEL) itself, so every field of that type is checked alike.
Every string a CEL rule reads carries a maxLength: the server refuses rules whose cost
it cannot bound.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

from egpu.api.base import Rule, rules_extra

# Go's time.ParseDuration syntax, the one CEL's duration() reads ("90s", "1h30m", "1.5s").
# Digits are bounded so no value can overflow a Go duration.
DURATION_PATTERN = r"^([0-9]{1,6}(\.[0-9]{1,9})?(ns|us|µs|ms|s|m|h))+$"
DURATION_MAX_LENGTH = 32

# A non-negative Kubernetes quantity ("2", "500m", "1.5Gi", "1e3").
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?$"
QUANTITY_MAX_LENGTH = 32

TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# Five cron fields, or one of the @ macros; the controller parses the fields themselves.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|([0-9A-Za-z*?/,\-]+ +){4}[0-9A-Za-z*?/,\-]+)$"
)
CRON_MAX_LENGTH = 100

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# prefix (253) + "/" + name (63)
LABEL_KEY_MAX_LENGTH = 317

_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)


def is_label_key(key: str) -> bool:
    """A qualified name: optional DNS-subdomain prefix and "/", then a name of <= 63 chars."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (0 < len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and _LABEL_NAME.match(name) is not None


def _check_label_key(key: str) -> str:
    if not is_label_key(key):
        raise ValueError(f"{key!r} is not a valid label key (e.g. egpu.io/leaf)")
    return key


def _quantity_to_str(value: Any) -> Any:
    # Users write `cpu: 2` as often as `cpu: "2"`; both mean the same quantity.
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a quantity must not be negative")
        return str(value)
    return value


_QUALIFIED_NAME = (
    "an optional DNS prefix and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"
)

LABEL_KEY_RULE = Rule(
    rule="!format.qualifiedName().validate(self).hasValue()",
    message=f"must be a valid label key: {_QUALIFIED_NAME} (e.g. egpu.io/leaf)",
)
LABEL_VALUE_RULE = Rule(
    rule="!format.labelValue().validate(self).hasValue()",
    message="must be a valid label value: at most 63 alphanumerics, '-', '_' or '.', "
    "beginning and ending with an alphanumeric (or empty)",
)

Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=DURATION_MAX_LENGTH),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "maxLength": DURATION_MAX_LENGTH}
    ),
]
"""A Go/Kubernetes duration string such as "30s", "5m" or "1h30m"."""

Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    StringConstraints(pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": QUANTITY_MAX_LENGTH,
        }
    ),
]
"""A non-negative Kubernetes quantity, written as an integer or a string ("2", "500m", "4Gi")."""

LabelKey = Annotated[
    str,
    AfterValidator(_check_label_key),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": LABEL_KEY_MAX_LENGTH,
            "x-kubernetes-validations": [LABEL_KEY_RULE.to_schema()],
        }
    ),
]
"""A label (or annotation) key such as "egpu.io/leaf" or "kubernetes.io/hostname"."""

LabelValue = Annotated[
    str,
    StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=63),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 63,
            "x-kubernetes-validations": [LABEL_VALUE_RULE.to_schema()],
        }
    ),
]
"""A label value: empty, or up to 63 alphanumerics, '-', '_', '.' ("NVIDIA-H100-80GB-HBM3")."""

DnsLabel = Annotated[
    str,
    StringConstraints(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63),
    WithJsonSchema(
        {"type": "string", "pattern": DNS_LABEL_PATTERN, "minLength": 1, "maxLength": 63}
    ),
]

ObjectName = Annotated[
    str,
    StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253),
    WithJsonSchema(
        {"type": "string", "pattern": DNS_SUBDOMAIN_PATTERN, "minLength": 1, "maxLength": 253}
    ),
]
"""The name of an object: a DNS subdomain."""

TimeOfDay = Annotated[
    str,
    StringConstraints(pattern=TIME_OF_DAY_PATTERN, max_length=5),
    WithJsonSchema({"type": "string", "pattern": TIME_OF_DAY_PATTERN, "maxLength": 5}),
]
"""A 24-hour UTC time of day, "HH:MM"."""

Cron = Annotated[
    str,
    StringConstraints(pattern=CRON_PATTERN, max_length=CRON_MAX_LENGTH),
    WithJsonSchema({"type": "string", "pattern": CRON_PATTERN, "maxLength": CRON_MAX_LENGTH}),
]
"""A five-field cron expression in UTC ("0 8 * * 1-5") or a macro such as "@daily"."""


def cel_quantity(path: str) -> str:
    """CEL for the quantity at `path`, whether the user wrote it as an integer or a string."""
    return f"quantity(string({path}))"


def cel_when_quantities(paths: tuple[str, ...], expr: str) -> str:
    """CEL: `expr`, skipped while any of `paths` is not a quantity.

    The pattern on each field already refuses such a value with a clear message;
    the guard keeps quantity() from adding a confusing conversion error beside it.
    """
    guards = " || ".join(f"!isQuantity(string({path}))" for path in paths)
    return f"{guards} || ({expr})"


def cel_millis(path: str) -> str:
    """CEL for a quantity in thousandths, as an int: whole millicores for CPU.

    CEL quantities have no division; thousandths as an integer make "is a multiple of
    the step" an exact `%` for any value that is a whole number of millis.
    """
    return f"int({cel_quantity(path)}.asApproximateFloat() * 1000.0 + 0.5)"


def cel_duration_le(shorter: str, longer: str) -> str:
    """CEL: duration `shorter` <= duration `longer`, skipped while either is malformed.

    The pattern on each field already refuses a malformed value with a clear message;
    the guard keeps duration() from adding a confusing conversion error beside it.
    """
    return (
        f"!{shorter}.matches(r'{DURATION_PATTERN}') || !{longer}.matches(r'{DURATION_PATTERN}')"
        f" || duration({shorter}) <= duration({longer})"
    )


# --- maps of a pod template: labels, annotations, resource lists ------------------------

MAX_LABELS = 64
MAX_ANNOTATIONS = 128
MAX_RESOURCES = 16  # names in one requests or limits map
RESOURCE_QUANTITY_MAX_LENGTH = 64
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def map_keys_rule(key_bad: str, what: str, message: str) -> Rule:
    """A rule on a map: no key `k` satisfies `key_bad`; the message names the first that
    does (naming all would join keys of unbounded length: the server refuses the cost)."""
    return Rule(
        rule=f"!self.exists(k, {key_bad})",
        message=message,
        message_expression=f'"{what} \'" + self.filter(k, {key_bad})[0] + "\': {message}"',
    )


LABEL_KEYS_RULE = map_keys_rule(
    "format.qualifiedName().validate(k).hasValue()",
    "invalid label key",
    f"a label key is {_QUALIFIED_NAME} (e.g. app.kubernetes.io/name)",
)
# The API server lower-cases an annotation key before it checks it.
ANNOTATION_KEYS_RULE = map_keys_rule(
    "format.qualifiedName().validate(k.lowerAscii()).hasValue()",
    "invalid annotation key",
    f"an annotation key is {_QUALIFIED_NAME} (e.g. example.com/owner)",
)
RESOURCE_NAMES_RULE = map_keys_rule(
    f"!(k in {list(_STANDARD_RESOURCES)} || k.startsWith('hugepages-') "
    "|| (k.contains('/') && !format.qualifiedName().validate(k).hasValue()))",
    "unknown resource",
    "a container resource is cpu, memory, ephemeral-storage, hugepages-<size>, "
    "or a name with a domain prefix such as nvidia.com/gpu",
)
RESOURCE_QUANTITY_RULE = Rule(
    rule="isQuantity(string(self)) && !quantity(string(self)).isLessThan(quantity('0'))",
    message="must be a non-negative quantity, e.g. 500m, 2 or 4Gi",
)


def _check_label_keys(labels: dict[str, str]) -> dict[str, str]:
    bad = [k for k in labels if not is_label_key(k)]
    if bad:
        raise ValueError(f"invalid label key {', '.join(map(repr, bad))}")
    return labels


def _check_annotation_keys(annotations: dict[str, str]) -> dict[str, str]:
    bad = [k for k in annotations if not is_label_key(k.lower())]
    if bad:
        raise ValueError(f"invalid annotation key {', '.join(map(repr, bad))}")
    return annotations


def is_container_resource_name(name: str) -> bool:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return True
    return "/" in name and is_label_key(name)


def _check_resource_names(resources: dict[str, Any]) -> dict[str, Any]:
    bad = [k for k in resources if not is_container_resource_name(k)]
    if bad:
        raise ValueError(f"unknown resource {', '.join(map(repr, bad))}")
    return resources


def _check_resource_quantity(value: Any) -> Any:
    # Kept as written (2 stays an integer): the template is copied onto pods as it is.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError('a quantity is an integer or a string, e.g. 2, "0.5" or 500m')
    negative = isinstance(value, int) and value < 0
    if negative or (isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value)):
        raise ValueError(f"{value!r} is not a non-negative quantity, e.g. 500m, 2 or 4Gi")
    return value


ResourceQuantity = Annotated[
    int | str,
    BeforeValidator(_check_resource_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": RESOURCE_QUANTITY_MAX_LENGTH,
            "x-kubernetes-validations": [RESOURCE_QUANTITY_RULE.to_schema()],
        }
    ),
]
"""A container's request or limit: a Kubernetes quantity, as an integer or a string.

Unlike a pod, a custom resource cannot take a fractional number here (`cpu: 0.5`):
its schema types a quantity as integer-or-string. Write "0.5" or 500m.
"""


# Each map's bound comes before its validator, or pydantic writes it as a maxLength.
ResourceList = Annotated[
    dict[str, ResourceQuantity],
    Field(max_length=MAX_RESOURCES, json_schema_extra=rules_extra(RESOURCE_NAMES_RULE)),
    AfterValidator(_check_resource_names),
]
"""A container's requests or limits: resource name -> quantity."""

Labels = Annotated[
    dict[str, LabelValue],
    Field(max_length=MAX_LABELS, json_schema_extra=rules_extra(LABEL_KEYS_RULE)),
    AfterValidator(_check_label_keys),
]
"""Labels: label key -> label value."""

Annotations = Annotated[
    dict[str, str],
    Field(max_length=MAX_ANNOTATIONS, json_schema_extra=rules_extra(ANNOTATION_KEYS_RULE)),
    AfterValidator(_check_annotation_keys),
]
"""Annotations: annotation key (a label key, in any letter case) -> any string."""
