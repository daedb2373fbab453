"""Every built-in probe's captions open with one plain sentence of what the figure shows.

A reader meets the caption before the method: its first sentence must be readable without it.
The rule checked here on the first sentence (up to the first full stop that ends a sentence):

- no mathematical symbols (``= | * ^ _ [ ] { } < > ≤ ≥ ≈ ± ‖ ∇ Σ − ² ⁽``…) and no Greek letters;
- no one-letter variable standing as a word (``x``, ``h``, ``v``, ``t``; the words "a" and "I" and
  sizes such as ``8x8`` are fine), and ``×`` only between numbers (``8×8``);
- no symbol names or method jargon that needs the method explained first (mu, lambda, rho, sigma,
  eigenvalue, geodesic, tangent, Hessian, Ritz, Lanczos, Lagrange, argmax).

The notation may follow in the next sentences. Captions are collected by running every probe once
on the small models the other tests use (a random DBN covers most; a convnet the classifier
probes; the tiny capsule model the capsule galleries).
"""

from __future__ import annotations

import re

import pytest
import torch

import vizkit
from vizkit.registry import PluginHost, reset_host

from .conftest import DATA_INFO, make_sdae

SYMBOLS = set("=|*^_[]{}<>≤≥≈±‖∇Σ∑∂√∈−²³⁽⁾")
JARGON = ("mu", "lambda", "rho", "sigma", "eigenvalue", "eigenvalues", "eigenvector", "eigenvectors",
          "geodesic", "tangent", "hessian", "ritz", "lanczos", "lagrange", "argmax")
#: A sentence ends at a full stop followed by a space or the end, except after "Fig" or "e.g".
_SENTENCE_END = re.compile(r"(?<!Fig)(?<!e\.g)\.(?=\s|$)")
_ONE_LETTER = re.compile(r"(?<![\w'’\-])(?![aAI]\b)[A-Za-z](?![\w'’])")
_TIMES_NOT_BETWEEN_NUMBERS = re.compile(r"(?<!\d)×|×(?!\d)")


def first_sentence(caption: str) -> str:
    match = _SENTENCE_END.search(caption)
    return caption[: match.start()] if match else caption


def notation_in(sentence: str) -> list[str]:
    """What makes ``sentence`` not plain, by the rule in the module docstring (empty: plain)."""
    found = sorted({ch for ch in sentence if ch in SYMBOLS or "\u0370" <= ch <= "\u03ff"})
    found += _ONE_LETTER.findall(sentence)
    found += ["×"] * bool(_TIMES_NOT_BETWEEN_NUMBERS.search(sentence))
    words = set(re.findall(r"[a-z]+", sentence.lower()))
    return found + [w for w in JARGON if w in words]


@pytest.mark.parametrize("sentence, plain", [
    ("Weights from the input to 3 units of h1; norms 0.2–0.5", True),
    ("Each square is the 8×8 image; a dot is where one capsule's ink is centred (Tieleman Fig. 2.16)", True),
    ("Eigenvalues mu of P(H - lambda I)P on the tangent space", False),
    ("Input on the sphere |x| = rho that maximises each unit", False),
    ("Each tile: Σ over the 3 strongest connections", False),
    ("Row i: the optimal input of unit i", False),
    ("γ of 6 units of h1 against their significance", False),
    ("mean of 4 samples (2 chains × 2, one every 2 Gibbs steps)", False),
])
def test_the_rule_itself(sentence, plain):
    assert (notation_in(sentence) == []) is plain, notation_in(sentence)


def test_first_sentence_stops_at_the_first_full_stop_not_at_figure_numbers():
    assert first_sentence("The templates (Tieleman Fig. 2.15) as drawn. Then 0.5 more.") == \
        "The templates (Tieleman Fig. 2.15) as drawn"


@pytest.fixture(scope="module")
def captions(tmp_path_factory) -> dict[str, str]:
    """``probe/figure`` → caption, from one small run of every built-in probe."""
    from vizkit.models.rbm.model import DBN

    from .test_capsule_model import tiny
    from .test_convnet import make_convnet
    from .test_evolution import with_kept_epochs

    host = PluginHost()
    reset_host(host)
    host.load()
    torch.manual_seed(0)
    dbn = DBN([1, 8, 8], layers="10,6")
    with torch.no_grad():
        for w in dbn.weight:
            w.normal_()
    dbn.data_info = dict(DATA_INFO)
    convnet = make_convnet()
    evolving, _ = with_kept_epochs()
    quick = {"steps": 30, "restarts": 2}
    runs = [
        ("actmax", dbn, "h1", quick),
        ("clamp", dbn, "h2", {"chains": 2, "samples": 2, "every": 2, "burn_in": 2}),
        ("compare", dbn, "h2", {"chains": 2, "samples": 2, "every": 2, "burn_in": 2, **quick}),
        ("deconv", convnet, "pool2", {"k": 2}),
        ("evolution", evolving, "pool2", {"split": "test"}),
        ("filters", dbn, "h1", {}),
        ("gabor", dbn, "h1", {}),
        ("gamma", make_sdae("12,6"), "h2", {"sets": 20, "pool_starts": 2, "pool_links": 2, "pool_members": 3}),
        ("hessian", dbn, "h1", {**quick, "top": 2, "frames": 3}),
        ("invcurves", convnet, "pool1", {"images": "0,200", "points": 3}),
        ("lincomb", dbn, "h2", {}),
        ("occlusion", convnet, "pool2", {"images": "0,100", "window": 3}),
        ("sample", dbn, "h2", {"chains": 4, "every": 3}),
        ("templates", tiny(), "code", {"images": "0:5", "forced_rows": 2, "cog_images": 20}),
        ("templates", dbn, "h1", {}),
        ("topk", dbn, "h1", {"k": 3}),
    ]
    found: dict[str, str] = {}
    try:
        for name, model, layer, options in runs:
            out = tmp_path_factory.mktemp(name)  # with files, so the video captions are written too
            units = {} if model.kind == "capsule" else {"units": "0:2"}
            result = vizkit.run_probe(name, model, layer, out=out, show_progress=False, **units, **options)
            for key, text in result.captions.items():
                found[f"{name}/{key} ({model.kind})"] = text
    finally:
        reset_host(None)
    return found


def test_every_builtin_probe_is_covered(fresh_host, captions):
    builtin = {name for name in vizkit.list_probes() if fresh_host.probe(name).__module__.startswith("vizkit.probes")}
    assert builtin and builtin <= {key.split("/")[0] for key in captions}


def test_every_caption_opens_with_a_plain_sentence(captions):
    bad = {key: (first_sentence(text), notation_in(first_sentence(text))) for key, text in captions.items()
           if notation_in(first_sentence(text))}
    assert not bad, "\n".join(f"{key}: {sentence!r} has {found}" for key, (sentence, found) in bad.items())
