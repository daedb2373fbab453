"""The thesis's own optimiser (Tieleman 2014, §2.5.3): per number, the most conservative of four steps.

For each learned number with mini-batch gradient g the rules propose a step size

1. α1 (an emergency cap on the change),
2. α2·|g| (plain gradient descent),
3. α3·|g|/√ĝ² (RMSprop-like: updates of a typical size),
4. α4·|g|/ĝ² (a larger gradient means a smaller step),

and the smallest wins. ĝ² is the most alarming (largest) of three decaying averages of g² with
memories γ = 1, e³ and e⁶ updates; they start high (the thesis: "initial gradient size estimates
are high"), here at ``initial_scale`` × the tensor's first mean g². The thesis's α's were tuned by hand and are
not published. Rule 4 beats rule 3 exactly where √ĝ² > α4/α3, so this module takes α3 as the
group's ``lr`` and α4 as ``lr × rule4_rms``: the gradient size above which steps shrink.

Fig. 2.13 is the share of numbers whose step each rule set, against training time; the optimiser
counts it at every step (:attr:`Conservative.rule_share`, over the numbers whose gradient is not 0)
at the cost of one comparison per number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

#: the memories (in updates) of the three decaying averages of g²
GAMMAS = (1.0, math.exp(3.0), math.exp(6.0))


class Conservative(torch.optim.Optimizer):
    """Four candidate steps per number, the smallest taken; counts which rule won.

    Counting the winners costs as much as the step itself, so it is done on every
    ``record_every``-th step only (the model records Fig. 2.13 at that interval); the steps are the
    same either way.
    """

    def __init__(self, params: Iterable[Any], lr: float = 3e-3, max_change: float = 0.1, max_rate: float = 1e4,
                 rule4_rms: float = 0.03, initial_scale: float = 10.0, record_every: int = 1) -> None:
        defaults = {"lr": lr, "max_change": max_change, "max_rate": max_rate, "rule4_rms": rule4_rms,
                    "initial_scale": initial_scale}
        super().__init__(params, defaults)
        self.record_every = record_every
        self.steps = 0
        #: fraction of the numbers whose step rules 1–4 set at the last counted step (Fig. 2.13)
        self.rule_share = torch.zeros(4, dtype=torch.float64)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.steps += 1
        count = self.steps % self.record_every == 0
        wins = torch.zeros(4, dtype=torch.float64)
        total = 0
        for group in self.param_groups:
            a1, a2, a3 = group["max_change"], group["max_rate"], group["lr"]
            a4 = a3 * group["rule4_rms"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                g = param.grad
                sq = g.square()
                state = self.state[param]
                if not state:
                    # high at the start, per tensor (one "type" of number): a number whose first
                    # gradient happens to be near 0 is not given a low estimate
                    state["averages"] = (group["initial_scale"] * sq.mean()).expand(len(GAMMAS), *sq.shape).clone()
                averages = state["averages"]
                keep = averages.new_tensor([1.0 - 1.0 / gamma for gamma in GAMMAS]).view(-1, *[1] * g.dim())
                averages.mul_(keep).add_(sq.unsqueeze(0) * (1.0 - keep))
                estimate = averages.amax(0).clamp_min_(1e-30)
                size = g.abs()
                rule3 = size * estimate.rsqrt() * a3
                rule4 = size / estimate * a4
                step = torch.minimum(rule3, rule4).clamp_(max=a1)
                step = torch.minimum(step, size * a2)
                param.sub_(torch.sign(g) * step)
                if count:
                    moved = g != 0  # a zero gradient ties every rule at 0: no rule set that step
                    rule = torch.stack([torch.full_like(size, a1), size * a2, rule3, rule4]).argmin(0)[moved]
                    wins += torch.bincount(rule, minlength=4).double().cpu()
                    total += rule.numel()
        if count and total:
            self.rule_share = wins / total
        return loss
