"""vizkit.mixtures: whether a mixture's components specialise, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vizkit import mixtures


def test_a_specialised_mixture_has_large_ratios_and_an_unspecialised_one_ratio_one():
    chosen = np.repeat(np.arange(3), 4)  # 12 images, 4 per component
    own = np.where(chosen[:, None] == np.arange(3)[None], 1.0, 3.0)  # own images 1, the others' 3
    spec = mixtures.specialisation(own, chosen)
    np.testing.assert_allclose(spec["ratio"], 3.0)
    assert spec["median_ratio"] == pytest.approx(3.0) and spec["chosen_is_best"] == 1.0
    same = np.ones((12, 3)) + 0.01 * np.arange(12)[:, None]  # every component draws every image alike
    flat = mixtures.specialisation(same, chosen)
    assert flat["median_ratio"] == pytest.approx(1.0, abs=0.02)


def test_a_component_without_own_images_has_no_ratio():
    chosen = np.array([0, 0, 1, 1])
    spec = mixtures.specialisation(np.ones((4, 3)), chosen)
    assert np.isnan(spec["ratio"][2]) and np.isfinite(spec["ratio"][:2]).all()


def test_what_a_wrong_component_draws():
    labels = np.array([0, 1, 2])
    names = np.array([0, 1, -1])  # component 2 has no name: never counted
    # image 0 (a 0) under component 1 is drawn as a 1 (own); image 1 (a 1) under component 0 as a 1 (input);
    # image 2 (a 2) under 0 as a 0 (own), under 1 as a 7 (neither)
    predicted = np.array([[0, 1, 5], [1, 1, 5], [0, 7, 5]])
    out = mixtures.wrong_component_draws(predicted, labels, names)
    assert out["pairs"] == 4
    assert out["own"] == pytest.approx(2 / 4) and out["input"] == pytest.approx(1 / 4)
