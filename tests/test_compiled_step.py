"""The fused optimiser step long ladder runs use: same updates as the eager step, and a safe fallback."""

import pytest
import torch

from vizkit import compiled_step
from vizkit.compiled_step import COMPILE_FROM, CompiledStep, wants_compile


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(40, 30, generator=gen)), torch.nn.Parameter(torch.randn(30, generator=gen))]


def _run(params, opt, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def test_auto_compiles_only_runs_long_enough_to_pay_for_it():
    assert not wants_compile("auto", COMPILE_FROM - 1) and wants_compile("auto", COMPILE_FROM)
    assert not wants_compile("auto", float("inf"))  # an epoch-counted run of unknown length
    assert wants_compile("on", 10) and not wants_compile("off", 10**9)


def test_a_compile_that_fails_says_so_once_and_the_eager_step_goes_on(monkeypatch, capsys):
    def broken(*args, **kwargs):
        def fail():
            raise RuntimeError("InductorError: no working C++ compiler found\ndetails")
        return fail

    monkeypatch.setattr(compiled_step.torch, "compile", broken)
    fused, plain = _params(), _params()
    opt_fused = torch.optim.Adadelta(fused, rho=0.99, eps=1e-8)
    CompiledStep(opt_fused)
    _run(fused, opt_fused, 3)
    _run(plain, torch.optim.Adadelta(plain, rho=0.99, eps=1e-8), 3)
    for a, b in zip(fused, plain, strict=True):
        assert torch.equal(a, b)  # each update applied exactly once
    err = capsys.readouterr().err
    assert err.count("note: the compiled optimiser step failed") == 1 and "no working C++ compiler" in err


def test_the_closure_lightning_passes_runs_before_the_update(monkeypatch):
    monkeypatch.setattr(compiled_step.torch, "compile", lambda fn, **kw: fn)  # the wiring, not inductor
    params = _params()
    opt = torch.optim.Adadelta(params)
    CompiledStep(opt)
    seen = []

    def closure():
        seen.append(params[0].detach().clone())
        params[0].grad = torch.ones_like(params[0])
        params[1].grad = torch.ones_like(params[1])
        return torch.tensor(3.0)

    before = params[0].detach().clone()
    assert float(opt.step(closure)) == 3.0
    assert torch.equal(seen[0], before) and not torch.equal(params[0], before)


@pytest.mark.slow
def test_the_compiled_adadelta_makes_the_eager_updates(measured):
    fused, plain = _params(), _params()
    opt_fused = torch.optim.Adadelta(fused, rho=0.99, eps=1e-8)
    step = CompiledStep(opt_fused)
    _run(fused, opt_fused, 50)
    _run(plain, torch.optim.Adadelta(plain, rho=0.99, eps=1e-8), 50)
    assert not step.eager, "torch.compile fell back to the eager step on this machine"
    gap = max(float((a - b).abs().max()) for a, b in zip(fused, plain, strict=True))
    measured("largest difference after 50 updates", gap, "< 1e-5 (float rounding of a fused loop)")
    assert gap < 1e-5
