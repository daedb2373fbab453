import pytest
import torch

from vizkit.errors import OptionError, UnitError, UnknownNameError
from vizkit.model import LayerInfo, parse_position
from vizkit.options import Option, resolve_options
from vizkit.units import parse_units


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0:4", [0, 1, 2, 3]),
        ("3,5,9", [3, 5, 9]),
        ("all", list(range(10))),
        (None, list(range(10))),
        ("0:10:3", [0, 3, 6, 9]),
        ("1, 4:6", [1, 4, 5]),
        (":3", [0, 1, 2]),
        ("7:", [7, 8, 9]),
        ([2, 4], [2, 4]),
        (5, [5]),
    ],
)
def test_parse_units(spec, expected):
    assert parse_units(spec, 10).tolist() == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("0:x", "malformed"),
        ("a", "malformed"),
        ("", "empty"),
        ("0:11", "reach past"),
        ("12", "out of range"),
        ("5:2", "select nothing"),
        ("1,1", "repeat"),
        ("0:4:0", "step may not be 0"),
    ],
)
def test_parse_units_errors(spec, message):
    with pytest.raises(UnitError, match=message):
        parse_units(spec, 10)


def test_parse_units_rejects_negative_tensor():
    with pytest.raises(UnitError, match="out of range"):
        parse_units(torch.tensor([-1]), 10)


SPECS = (
    Option("steps", int, 100, "steps", min=1, max=1000),
    Option("lr", float, 0.1, "lr", min=0.0),
    Option("mode", str, "a", "mode", choices=("a", "b")),
    Option("flag", bool, False, "flag"),
    Option("k", int, 100, "k", min=1, special=("all",)),
    Option("rho", float, None, "radius"),
)


def test_resolve_options_coerces_strings():
    got = resolve_options(SPECS, {"steps": "5", "lr": "0.5", "mode": "b", "flag": "yes", "k": "all"}, "p")
    assert got == {"steps": 5, "lr": 0.5, "mode": "b", "flag": True, "k": "all", "rho": None}


@pytest.mark.parametrize(
    "given, error, message",
    [
        ({"bogus": 1}, UnknownNameError, "unknown option 'bogus' for p; valid options: flag, k, lr, mode, rho, steps"),
        ({"steps": "x"}, OptionError, "must be an integer"),
        ({"steps": 0}, OptionError, "must be >= 1"),
        ({"steps": 5000}, OptionError, "must be <= 1000"),
        ({"steps": 1.5}, OptionError, "must be an integer"),
        ({"lr": "nan"}, OptionError, "must be a number"),
        ({"mode": "c"}, OptionError, "must be one of"),
        ({"flag": "maybe"}, OptionError, "true or false"),
        ({"k": "some"}, OptionError, "or one of"),
    ],
)
def test_resolve_options_errors(given, error, message):
    with pytest.raises(error, match=message):
        resolve_options(SPECS, given, "p")


@pytest.mark.parametrize(
    "text, expected",
    [(None, None), ("", None), ("mean", None), ("0,0", (0, 0)), (" 2, 3", (2, 3)), ("3,4", (3, 4))],
)
def test_parse_position(text, expected):
    info = LayerInfo("c1", (8, 4, 5))
    assert parse_position(text, info) == expected


@pytest.mark.parametrize(
    "text, shape, message",
    [
        ("1,1", (10,), "applies to convolutional maps"),
        ("1", (8, 4, 5), "must be 'row,col'"),
        ("a,b", (8, 4, 5), "must be 'row,col'"),
        ("4,0", (8, 4, 5), "outside the 4x5 map"),
        ("0,-1", (8, 4, 5), "outside the 4x5 map"),
    ],
)
def test_parse_position_errors(text, shape, message):
    with pytest.raises(OptionError, match=message):
        parse_position(text, LayerInfo("c1", shape))
