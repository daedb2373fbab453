"""Typed probe options: one declaration gives defaults, CLI validation, help text and docs.

A probe lists :class:`Option` objects; the CLI passes ``-o KEY VALUE`` strings and Python callers
pass real values, and both go through :func:`resolve_options`, so a bad value fails the same way
before any compute starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import OptionError, UnknownNameError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Option:
    """One option of a probe.

    ``special`` lists literal strings accepted besides values of ``type`` (e.g. ``"all"`` for a
    count); ``default=None`` means "let the probe decide" (e.g. a radius read from the checkpoint).
    """

    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    special: tuple[str, ...] = ()

    def describe(self) -> str:
        """Short text for listings: type, default and allowed range."""
        parts = [self.type.__name__]
        if self.choices:
            parts = ["|".join(self.choices)]
        if self.special:
            parts.append("or " + "|".join(self.special))
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g}"
            hi = "" if self.max is None else f"{self.max:g}"
            parts.append(f"[{lo}..{hi}]")
        return f"{' '.join(parts)} = {self.default!r}"

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert and check one value, raising :class:`OptionError` with a one-line reason."""
        where = f"option {self.name!r} of {owner}"
        if value is None:
            if self.default is None:
                return None
            raise OptionError(f"{where} may not be empty")
        if isinstance(value, str) and value in self.special:
            return value
        try:
            converted = _convert(self.type, value)
        except (TypeError, ValueError):
            extra = f" or one of {list(self.special)}" if self.special else ""
            raise OptionError(
                f"{where} must be {_TYPE_WORDS.get(self.type, self.type.__name__)}{extra}, "
                f"got {value!r}"
            ) from None
        if self.choices and converted not in self.choices:
            raise OptionError(f"{where} must be one of {list(self.choices)}, got {converted!r}")
        if self.type in (int, float):
            if self.min is not None and converted < self.min:
                raise OptionError(f"{where} must be >= {self.min:g}, got {converted!r}")
            if self.max is not None and converted > self.max:
                raise OptionError(f"{where} must be <= {self.max:g}, got {converted!r}")
        return converted


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return int(str(value).strip())
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(value)
        return number
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return kind(value)


def resolve_options(
    specs: Sequence[Option], given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Merge ``given`` over the defaults, rejecting unknown keys and invalid values."""
    by_name = {spec.name: spec for spec in specs}
    unknown = [key for key in given if key not in by_name]
    if unknown:
        valid = ", ".join(sorted(by_name)) or "(this probe takes no options)"
        raise UnknownNameError(f"unknown option {unknown[0]!r} for {owner}; valid options: {valid}")
    resolved = {spec.name: spec.default for spec in specs}
    for key, value in given.items():
        resolved[key] = by_name[key].coerce(value, owner)
    return resolved
