"""Objectives written as text, for the CLI and gallery recipes: ``channel(conv2,3) - 0.5*channel(conv2,5)``.

A small recursive-descent parser, never ``eval``: numbers, ``+ - * /``, parentheses, and calls of
the objective functions (:data:`vizkit.optvis.objectives.FUNCTIONS`). A function's layer
arguments are read verbatim up to the next ``,`` or ``)``, so any layer name works (``features.0``,
``layer1.0.relu#2``, ``0``). Vector arguments are ``[0.1, -2, ...]``, ``random(SEED)`` (a random
unit direction) or ``classmean(K)`` (the mean activation of class K's examples minus that of all
examples, when the caller can compute it). Every mistake is one line, naming where it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from vizkit.errors import OptionError

from . import objectives as obj

_NUMBER = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")

#: ``classmean(k)`` resolver: (layer, class) -> [channels] vector, from the caller's data
ClassMean = Callable[[str, int], torch.Tensor]


class _Parser:
    def __init__(self, text: str, layers: set[str] | None, class_mean: ClassMean | None) -> None:
        self.text, self.pos, self.layers, self.class_mean = text, 0, layers, class_mean

    def fail(self, message: str) -> OptionError:
        return OptionError(f"objective {self.text!r}: {message} at character {self.pos + 1}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.peek() or "the end"
            raise self.fail(f"expected {char!r}, found {found!r}")
        self.pos += 1

    def expression(self) -> Any:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.text[self.pos]
            self.pos += 1
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Any:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.text[self.pos]
            self.pos += 1
            right = self.factor()
            if op == "/" and not isinstance(right, obj.Objective) and right == 0:
                raise self.fail("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def factor(self) -> Any:
        char = self.peek()
        if char == "-":
            self.pos += 1
            return -self.factor()
        if char == "+":
            self.pos += 1
            return self.factor()
        if char == "(":
            self.pos += 1
            value = self.expression()
            self.expect(")")
            return value
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            return float(number.group(1))
        name = _NAME.match(self.text, self.pos)
        if name:
            self.pos = name.end()
            return self.call(name.group(1))
        raise self.fail(f"expected a number, a function or '(', found {char or 'the end'!r}")

    def call(self, name: str) -> obj.Objective:
        if name not in obj.FUNCTIONS:
            raise self.fail(f"unknown function {name!r} (known: {', '.join(sorted(obj.FUNCTIONS))})")
        self.expect("(")
        args: list[Any] = []
        layer_args = obj.LAYER_ARGS[name]
        while True:
            if self.peek() == ")" and not args:
                break
            args.append(self.layer() if len(args) in layer_args else self.argument(name))
            if self.peek() == ",":
                self.pos += 1
                continue
            break
        self.expect(")")
        try:
            return obj.FUNCTIONS[name](*args)
        except TypeError:
            raise self.fail(f"wrong number of arguments to {name}") from None

    def layer(self) -> str:
        start = self.pos
        depth = 0
        while self.pos < len(self.text) and (depth or self.text[self.pos] not in ",)"):
            depth += {"(": 1, ")": -1}.get(self.text[self.pos], 0)
            self.pos += 1
        layer = self.text[start : self.pos].strip()
        if not layer:
            self.pos = start
            raise self.fail("expected a layer name")
        if self.layers is not None and layer not in self.layers:
            self.pos = start
            raise self.fail(f"no layer {layer!r}")
        return layer

    def argument(self, function: str) -> Any:
        if self.peek() == "[":
            return self.vector_literal()
        name = _NAME.match(self.text, self.pos)
        if name and name.group(1) in ("random", "classmean"):
            self.pos = name.end()
            self.expect("(")
            value = self.expression()
            self.expect(")")
            if isinstance(value, obj.Objective) or value != int(value):
                raise self.fail(f"{name.group(1)}(...) takes an integer")
            return self.vector(name.group(1), int(value))
        value = self.expression()
        if isinstance(value, obj.Objective):
            raise self.fail(f"{function} takes numbers and vectors here, not an objective")
        return int(value) if value == int(value) else value

    def vector_literal(self) -> obj.Vector:
        self.expect("[")
        values = [self.number()]
        while self.peek() == ",":
            self.pos += 1
            values.append(self.number())
        self.expect("]")
        return obj.Vector(values, text="[" + ",".join(f"{v:g}" for v in values) + "]")

    def number(self) -> float:
        value = self.expression()
        if isinstance(value, obj.Objective):
            raise self.fail("a vector holds numbers")
        return float(value)

    def vector(self, kind: str, k: int) -> obj.Vector:
        if kind == "random":
            return obj.random_vector(k)
        if self.class_mean is None:
            raise self.fail("classmean(...) needs labelled data (-o data with labels)")
        resolve = self.class_mean
        return obj.Vector(make=lambda layer, channels: resolve(layer, k), text=f"classmean({k})")


def parse(text: str, layers: set[str] | None = None, class_mean: ClassMean | None = None) -> obj.Objective:
    """The objective ``text`` describes; ``layers`` (when given) are the names it may read."""
    parser = _Parser(str(text), layers, class_mean)
    if not parser.peek():
        raise OptionError("objective: the expression is empty")
    value = parser.expression()
    if parser.peek():
        raise parser.fail(f"unexpected {parser.peek()!r}")
    if not isinstance(value, obj.Objective):
        raise OptionError(f"objective {text!r}: a number is not an objective (name a layer's channel, neuron, ...)")
    return value
