"""The thesis's conservative optimiser (§2.5.3), checked step by step against its four rules."""

from __future__ import annotations

import math

import pytest
import torch

from vizkit.models.capsule.conservative import GAMMAS, Conservative


def by_hand(grads: list[float], lr: float, max_change: float, max_rate: float, rule4_rms: float,
            initial_scale: float) -> tuple[list[float], list[int]]:
    """The thesis's rules in plain floats: value after each step and which rule set it."""
    value, averages, path, rules = 0.0, None, [], []
    for g in grads:
        if averages is None:
            averages = [initial_scale * g * g] * len(GAMMAS)
        averages = [a * (1 - 1 / gamma) + g * g / gamma for a, gamma in zip(averages, GAMMAS)]
        est = max(averages)
        proposals = [max_change, max_rate * abs(g), lr * abs(g) / math.sqrt(est), lr * rule4_rms * abs(g) / est]
        rule = min(range(4), key=proposals.__getitem__)
        value -= math.copysign(proposals[rule], g)
        path.append(value)
        rules.append(rule)
    return path, rules


@pytest.mark.parametrize("settings", [
    dict(lr=0.01, max_change=0.1, max_rate=1e4, rule4_rms=1.0, initial_scale=100.0),   # rule 4, then rule 3
    dict(lr=0.01, max_change=0.1, max_rate=1e4, rule4_rms=1e-3, initial_scale=1.0),    # rule 4 throughout
    dict(lr=10.0, max_change=0.05, max_rate=1e4, rule4_rms=1e3, initial_scale=1.0),    # the emergency cap
    dict(lr=0.01, max_change=0.1, max_rate=1e-3, rule4_rms=1.0, initial_scale=1.0),    # plain gradient descent
])
def test_each_step_is_the_smallest_of_the_four_rules(settings):
    grads = [2.0, -0.5, 0.3, 0.3, -1.5, 0.01, 0.2, 0.2]
    expected, rules = by_hand(grads, **settings)
    param = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    opt = Conservative([param], **settings)
    for g, want, rule in zip(grads, expected, rules):
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        assert float(param.detach()) == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert opt.rule_share.tolist() == [1.0 if r == rule else 0.0 for r in range(4)]
    assert len(set(rules)) >= 1


def test_rule_four_gives_way_to_rule_three_as_the_high_start_decays():
    """Fig. 2.13's shape on a known case: the estimates start high, so rule 4 sets every step; as
    the slow average forgets the start, rule 3 takes over where √ĝ² < α4/α3."""
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.zeros(200, dtype=torch.float64))
    scale = torch.logspace(-3, 0, 200, dtype=torch.float64)  # gradient sizes over three decades
    opt = Conservative([param], lr=1e-3, rule4_rms=0.03, initial_scale=1.0)
    shares = []
    for _ in range(2500):
        param.grad = scale * torch.randn(200, dtype=torch.float64)
        opt.step()
        shares.append(opt.rule_share.clone())
    assert shares[0][3] == 1.0
    final = shares[-1]
    # by then ĝ² tracks the true g² (times up to the noise of a few samples): rule 3 for the
    # small-gradient numbers, rule 4 for the largest ones
    assert 0.3 < final[2] < 0.8 and 0.2 < final[3] < 0.7 and final[0] == final[1] == 0.0


def test_groups_keep_their_own_rates():
    a, b = (torch.nn.Parameter(torch.zeros(3)) for _ in range(2))
    opt = Conservative([{"params": [a]}, {"params": [b], "lr": 0.002}], lr=0.001, rule4_rms=1e9, initial_scale=1.0)
    a.grad = b.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(b, 2 * a)
