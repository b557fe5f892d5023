"""Value types shared by the kinds: durations, quantities, label keys, names, times of day.

Each type validates in Python the way the API server validates it, and emits the CRD
schema (pattern, bounds, CEL) itself, so every field of that type is checked alike.
Every string a CEL rule reads carries a maxLength: the server refuses rules whose cost
it cannot bound.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints, WithJsonSchema

from egpu.api.base import Rule

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


LABEL_KEY_RULE = Rule(
    rule="!format.qualifiedName().validate(self).hasValue()",
    message="must be a valid label key: an optional DNS prefix and '/', then a name "
    "of at most 63 alphanumerics, '-', '_' or '.' (e.g. egpu.io/leaf)",
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
    WithJsonSchema({"type": "string", "pattern": LABEL_VALUE_PATTERN, "maxLength": 63}),
]

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
