"""Plain YAML data -> frozen dataclasses, converted by each field's declared type.

YAML's own reading is only a hint (it reads `1e-4` as a string): values are converted by the
annotation (bool, int, float, str, tuples, unions, nested dataclasses, `Literal` closed sets and
`Annotated[str, Pattern(...)]` families), and every error names the dotted key it is about.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal


@dataclass(frozen=True)
class Pattern:
    """Marks a string field whose allowed values are a family too large to list (`cuda:N`, `avg:K`)."""

    regex: str
    allowed: str
    """How an error names the allowed values."""


class FieldError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise FieldError(key, message)


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return " or ".join(map(str, typing.get_args(kind)))
    return getattr(kind, "__name__", str(kind).replace("typing.", ""))


def _convert(value: Any, kind: Any, key: str) -> Any:
    """`value` as the declared type `kind`, or a FieldError naming `key`."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        allowed = typing.get_args(kind)
        if value not in allowed:
            raise FieldError(key, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin is Annotated:
        text = _convert(value, typing.get_args(kind)[0], key)
        for rule in (m for m in kind.__metadata__ if isinstance(m, Pattern)):
            if re.fullmatch(rule.regex, text) is None:
                raise FieldError(key, f"must be {rule.allowed}, got {value!r}")
        return text
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, key)
            except FieldError as error:
                errors.append(str(error))
        raise FieldError(key, f"expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is tuple:
        item_type = typing.get_args(kind)[0]
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise FieldError(key, f"expected a list, got {value!r}")
        return tuple(_convert(item, item_type, f"{key}[{index}]") for index, item in enumerate(value))
    if dataclasses.is_dataclass(kind):
        return build(kind, value, key)
    return _convert_scalar(value, kind, key)


def _convert_scalar(value: Any, kind: Any, key: str) -> Any:
    """`value` as bool, int, float or str: YAML's own reading is only a hint (`1e-4` is a string to it)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise FieldError(key, f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise FieldError(key, f"expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise FieldError(key, f"expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise FieldError(key, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FieldError(key, f"expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise FieldError(key, f"expected a finite number, got {value!r}")
        return number
    if kind is str:
        if isinstance(value, (dict, list)) or value is None:
            raise FieldError(key, f"expected a string, got {value!r}")
        return str(value)
    raise FieldError(key, f"unsupported field type {kind!r}")


def build(cls: Any, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise FieldError(prefix or "(top level)", f"expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            path = f"{prefix}.{key}" if prefix else str(key)
            close = [n for n in names if n.replace("_", "") == str(key).replace("_", "").replace("-", "")]
            hint = f" (did you mean {close[0]}?)" if close else f"; known keys: {', '.join(sorted(names))}"
            raise FieldError(path, f"unknown key{hint}")
    values = {key: _convert(value, hints[key], f"{prefix}.{key}" if prefix else key) for key, value in data.items()}
    # __post_init__ checks name their keys in full (`optim.lr`), so their errors pass through.
    return cls(**values)
