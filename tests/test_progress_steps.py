"""Long steps report progress: AIS, the exact log-likelihood, Gibbs chains, hessian's Newton steps and
eigensolvers. A fake progress function records what each step announces (a description and a
total) and how many items it then went through; showing progress must not change a number."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pytest
import torch

import vizkit
from vizkit import ProbeContext
from vizkit.models.rbm import RBM, RBMParams, ais_log_partition, gibbs_generate, log_partition_exact
from vizkit.models.rbm.progress import duration

pytestmark = pytest.mark.filterwarnings("ignore:.*no .validation_step.*")


class Recorder:
    """A :data:`vizkit.optim.Progress` that remembers every step: [description, total, items seen]."""

    def __init__(self) -> None:
        self.steps: list[list] = []

    def __call__(self, items: Iterable, desc: str, total: int | None = None) -> Iterator:
        record = [desc, total, 0]
        self.steps.append(record)
        for item in items:
            record[2] += 1
            yield item

    def named(self, prefix: str) -> list[list]:
        return [s for s in self.steps if s[0].startswith(prefix)]


def _rbm(visible: int = 9, hidden: int = 12, seed: int = 0) -> RBMParams:
    gen = torch.Generator().manual_seed(seed)
    return RBMParams(torch.randn(hidden, visible, generator=gen), torch.randn(hidden, generator=gen),
                     torch.randn(visible, generator=gen), "binary")


def test_ais_reports_every_temperature_and_gives_the_same_estimate():
    rbm, rec = _rbm(), Recorder()
    quiet = ais_log_partition(rbm, chains=8, betas=60, generator=torch.Generator().manual_seed(1))
    shown = ais_log_partition(rbm, chains=8, betas=60, generator=torch.Generator().manual_seed(1), progress=rec)
    [(desc, total, seen)] = rec.steps
    assert desc.startswith("AIS") and total == seen == 59  # every temperature after the base model
    assert shown == quiet


def test_exact_log_z_reports_its_blocks_of_hidden_states():
    rbm, rec = _rbm(visible=30, hidden=16), Recorder()
    log_z = log_partition_exact(rbm, progress=rec)
    [(desc, total, seen)] = rec.steps
    assert "2^16" in desc and total == seen and total >= 1
    assert log_z == log_partition_exact(rbm)


def test_gibbs_chains_report_every_step_and_keep_the_same_samples():
    layers, rec = [_rbm(), _rbm(visible=12, hidden=5, seed=1)], Recorder()
    kwargs = dict(chains=3, samples=4, every=5, burn_in=7, probabilities=True)
    quiet = gibbs_generate(layers, 2, generator=torch.Generator().manual_seed(2), **kwargs)
    shown = gibbs_generate(layers, 2, generator=torch.Generator().manual_seed(2), progress=rec, **kwargs)
    [(desc, total, seen)] = rec.steps
    assert desc == "Gibbs steps" and total == seen == 7 + 4 * 5
    assert torch.equal(shown, quiet)


def test_sample_probe_shows_the_chains_progress(fresh_host, monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(ProbeContext, "progress", lambda self, items, desc, total=None: rec(items, desc, total))
    model = RBM(input_shape=[1, 3, 3], hidden=4)
    vizkit.run_probe("sample", model, "h1", chains=4, samples=2, every=3, burn_in=1, show_progress=True)
    assert [s[1:] for s in rec.named("Gibbs")] == [[7, 7]]
    rec.steps.clear()
    vizkit.run_probe("sample", model, "h1", chains=4, samples=2, every=3, show_progress=False)
    assert rec.steps == []


@pytest.mark.parametrize("method, solver", [("full", "Hessian columns"), ("lanczos", "Lanczos steps")])
def test_hessian_shows_newton_steps_and_its_eigensolver(fresh_host, monkeypatch, method, solver):
    from tests.test_hessian import quadratic_problem

    rec = Recorder()
    monkeypatch.setattr(ProbeContext, "progress", lambda self, items, desc, total=None: rec(items, desc, total))
    model, _, _ = quadratic_problem(5)
    vizkit.run_probe("hessian", model, "units", seed=0, method=method, videos=False, top=2, krylov=16,
                     restarts=1, steps=50, show_progress=True)
    [(_, newton_total, newton_seen)] = rec.named("Newton")
    assert newton_total == 3 and 0 <= newton_seen <= 3  # converged units stop early
    [(_, total, seen)] = rec.named(solver)
    assert total >= 1 and 1 <= seen <= total


def _train(cli, tmp_path, *flags):
    return cli("train", "rbm", "--data", "digits", "--epochs", "1", "--binarize", "--out", tmp_path / "m.pt",
               "--log-dir", tmp_path / "logs", *flags)


def test_training_reports_the_log_likelihood_step_off_a_terminal(fresh_host, tmp_path, cli):
    """Off a terminal (as here) training prints epoch lines, so the exact sum and AIS print a start
    line and quarter lines with the time left on stderr, and the result with AIS's ± on stdout."""
    res = _train(cli, tmp_path, "--hidden", "6")
    assert res.code == 0, res.err
    assert "exact log Z (2^6 hidden states): 0/" in res.err and "left" in res.err
    assert "test log-likelihood" in res.out and "exact" in res.out
    res = _train(cli, tmp_path, "--hidden", "6", "--loglik", "ais", "--ais-chains", "4", "--ais-betas", "41")
    assert res.code == 0, res.err
    assert "AIS log Z (4 runs): 0/40" in res.err and "40/40" in res.err
    line = next(x for x in res.out.splitlines() if "test log-likelihood" in x)
    assert "±" in line and "4 runs × 41 temperatures" in line
    model = vizkit.load(tmp_path / "m.pt")
    assert f"{model.metrics['layer 1']['test_loglik']:.2f}" in line


def test_quiet_training_prints_no_progress(fresh_host, tmp_path, cli):
    res = _train(cli, tmp_path, "--hidden", "6", "-q")
    assert res.code == 0 and "log Z" not in res.err and "log-likelihood" not in res.out


@pytest.mark.parametrize("seconds, text", [(3.21, "3.2 s"), (42.4, "42 s"), (185, "3 min 5 s"), (3720, "1 h 2 min")])
def test_durations_read_as_words(seconds, text):
    assert duration(seconds) == text


def test_progress_is_not_a_number_changer_for_the_sample_probe(fresh_host):
    """The same seed gives the same samples with and without progress shown."""
    model = RBM(input_shape=[1, 3, 3], hidden=4)
    a = vizkit.run_probe("sample", model, "h1", chains=3, every=4, show_progress=True).arrays["samples"]
    b = vizkit.run_probe("sample", model, "h1", chains=3, every=4, show_progress=False).arrays["samples"]
    assert np.array_equal(a, b)
