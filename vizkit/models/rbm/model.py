"""The ``rbm`` and ``dbn`` model kinds: a stack of RBMs trained greedily with CD-k, PCD or FPCD.

An ``rbm`` is a one-layer stack. A ``dbn`` trains layer j on the hidden probabilities of layer
j-1 (Hinton et al. 2006), one Lightning ``fit`` per layer. Training uses manual optimisation: the
:class:`~.trainers.GradientEstimator` writes the CD/PCD/FPCD gradient estimate into ``.grad`` in a
few fused in-place operations and a plain SGD (no momentum; weight decay on weights only) steps,
so the per-update cost is the arithmetic, not the framework. Every epoch logs the free energy of
training vs held-out data (the overfitting monitor) and, at the end of each stage, the test
log-likelihood of the first RBM: exact for ≤ 25 hidden units, AIS otherwise.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ... import capabilities as caps
from ...errors import OptionError
from ...model import LayerInfo, Weights, squashed
from ...optim import Progress
from ...options import Option, resolve_options
from ..base import ReferenceModel, StackedLayers
from ..sdae import parse_layer_sizes
from .evaluate import (
    ais_log_partition,
    base_rate_bias,
    check_exact,
    log_likelihood_exact,
    log_partition_exact,
    mean_free_energy,
)
from .interfaces import CLAMPED_SAMPLE, SAMPLE
from .params import RBMParams, bernoulli
from .progress import duration, training_progress
from .sampling import gibbs_generate
from .trainers import LOCAL_METHODS, METHODS, GradientEstimator

# the held-out split feeds the epoch-end free-energy monitor, not a validation loop
warnings.filterwarnings("ignore", message=r".*val_dataloader.* but have no .validation_step.*")

COMMON_OPTIONS: tuple[Option, ...] = (
    Option("visible", str, "auto", "visible units (auto: binary for data in [0,1], else gaussian)",
           choices=("auto", "binary", "gaussian")),
    Option("binarize", bool, False, "sample binary data from [0,1] values afresh every time a case is used"),
    Option("trainer", str, "auto", "gradient estimate (auto: pcd for binary visible units, cd for gaussian "
           "ones, where PCD with momentum diverges)", choices=("auto", *METHODS)),
    Option("k", int, 1, "Gibbs steps per update of CD-k, mean-field steps of mfcd (pcd and fpcd take one)",
           min=1, max=1000),
    Option("lr", float, None, "learning rate (default 0.05; 0.02 for gaussian visible units)", min=0.0),
    Option("momentum", float, None, "SGD momentum (default 0 for binary visible units, where it hurts PCD; "
           "0.9 for gaussian ones)", min=0.0, max=0.999),
    Option("sparsity", float, None, "target mean hidden probability: each update adds sparsity_cost · "
           "(target − batch mean) to the hidden biases (Lee et al. 2008; default 0 for binary visible units, "
           "0.02 for gaussian ones)", min=0.0, max=1.0),
    Option("sparsity_cost", float, 1.0, "strength of the sparsity target's pull on the hidden biases", min=0.0),
    Option("upper_lr", float, None, "learning rate of the RBMs above the first (default: --lr; 0.1 above "
           "gaussian visible units, where the upper RBMs see sparse binary codes whose gradients are tiny)",
           min=0.0),
    Option("upper_sparsity", float, None, "sparsity target of the RBMs above the first (default: --sparsity; 0 "
           "above gaussian visible units: the target is what makes the first layer's edge detectors, and on "
           "the sparse codes above it it starves the upper RBMs, whose clamped chains then all look the same)",
           min=0.0, max=1.0),
    Option("upper_weight_decay", float, None, "L2 penalty on the weights of the RBMs above the first (default: "
           "--weight-decay; 2e-4 above gaussian visible units, where without it CD-1 leaves a spurious mode "
           "that every clamped chain falls into)", min=0.0),
    Option("upper_k", int, None, "Gibbs steps per update of CD-k in the RBMs above the first (default: --k; 10 "
           "above gaussian visible units, where CD-1 left the second RBM a spurious mode, a diagonal grating "
           "that the chains of every clamped unit fell into)", min=1, max=1000),
    Option("upper_lr_scale", str, "auto", "activity: the rate of each RBM above the second is --upper-lr × "
           "(mean of the second RBM's input) / (mean of its own input), at most --upper-lr, so its weight steps "
           "keep their size on "
           "denser codes (auto: activity above gaussian visible units, where at the second RBM's rate every "
           "third-layer unit learned the same pattern; none otherwise)", choices=("auto", "none", "activity")),
    Option("upper_data", str, "auto", "what the RBMs above the first learn from: the layer below's "
           "probabilities, or binary samples of them drawn afresh each update (auto: samples above gaussian "
           "visible units, where on the probabilities every third-layer unit learned the same pattern, "
           "probabilities otherwise)", choices=("auto", "probabilities", "samples")),
    Option("visible_std", float, None, "gaussian visible units: the data's std σ; inputs are divided by it so "
           "p(v | h) = N(c + Wᵀh, σ²) (default: the data's pixel std, so the model's noise matches the "
           "data's variance; 1 for binary units)", min=1e-6),
    Option("lr_schedule", str, "auto", "auto: linear decay to 0 for fpcd, constant otherwise",
           choices=("auto", "constant", "linear")),
    Option("fast_lr", float, None, "fpcd: constant learning rate of the fast weights (default: --lr)", min=0.0),
    Option("fast_decay", float, 19 / 20, "fpcd: fast weights shrink by this factor per update", min=0.0, max=1.0),
    Option("weight_decay", float, 0.0, "L2 penalty on the weights (the thesis used 2.5e-5 to 3e-4)", min=0.0),
    Option("loglik", str, "auto", "test log-likelihood of the first RBM: exact (<= 25 hidden units; "
           "minutes at 25 on MNIST), ais, auto (exact when it takes seconds, else ais) or none",
           choices=("auto", "exact", "ais", "none")),
    Option("loglik_every", int, 0, "also evaluate the log-likelihood every N epochs (0: end of stage only)", min=0),
    # not fewer by default: with few runs the heavy-tailed weights bias log Z low by more than the
    # printed ± (docs/models/rbm.md, "What is measured")
    Option("ais_chains", int, 100, "AIS: annealing runs (the estimate's ± is their standard error)",
           min=2, max=100000),
    Option("ais_betas", int, 2000, "AIS: intermediate temperatures (more is slower and less biased)", min=3),
)
AUTO_EXACT_TERMS = 1 << 31  # --loglik auto: exact up to ~2e9 softplus terms (H <= 21 on MNIST)
_MONITOR_ROWS = 10000  # free energy monitor: up to this many held-out rows and as many training rows


class BoltzmannStack(StackedLayers, ReferenceModel):
    """Shared body of ``rbm`` and ``dbn``; subclasses only say how the layer sizes are given."""

    capabilities = frozenset({caps.ACTIVATIONS, caps.INPUT_GRAD, caps.WEIGHTS, caps.RECONSTRUCT, CLAMPED_SAMPLE,
                              SAMPLE})
    kind_options: ClassVar[tuple[Option, ...]] = ()
    #: dataset options used unless ``-D`` says otherwise: ZCA whitening with a large regulariser
    #: (a low-pass roll-off; a tiny one amplifies pixel noise) and 500,000 fresh patches per epoch,
    #: i.e. 5,000 updates in one default epoch (docs/models/rbm.md, "Natural-image patches").
    data_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "patches": {"whiten": "zca", "whiten_eps": 1.0, "n_train": 500000}}

    def __init__(self, input_shape: list[int], sizes: list[int], kind_hparams: Mapping[str, Any],
                 **options: Any) -> None:
        super().__init__()
        hp = resolve_options(COMMON_OPTIONS, options, f"model {self.kind!r}")
        hp = _concrete(hp)
        self.save_hyperparameters({"input_shape": [int(s) for s in input_shape], **kind_hparams, **hp})
        self.automatic_optimization = False
        self.sizes = [int(torch.tensor(input_shape).prod())] + [int(s) for s in sizes]
        self.weight = nn.ParameterList()
        self.hidden_bias = nn.ParameterList()
        self.visible_bias = nn.ParameterList()
        gen = torch.Generator().manual_seed(0)
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.weight.append(nn.Parameter(torch.randn(n_out, n_in, generator=gen) * 0.01))
            self.hidden_bias.append(nn.Parameter(torch.zeros(n_out)))
            self.visible_bias.append(nn.Parameter(torch.zeros(n_in)))
        self._estimator: GradientEstimator | None = None
        self._activity: tuple[float, float] | None = None  # see _stage_lr
        self._estimator_state: dict[str, Any] | None = None
        self._history: dict[str, list[float]] = {}
        self._loglik_cache: tuple[int, dict[str, Any]] | None = None

    def layer_infos(self) -> dict[str, LayerInfo]:
        """The hidden units are sigmoid: probes can reach their total input, what Erhan et al.
        call a unit's activation (their footnote 1)."""
        return squashed(super().layer_infos(), "sigmoid")

    # -- the RBMs -------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.weight)

    def rbm(self, index: int) -> RBMParams:
        """RBM ``index`` (0 = bottom) as plain tensors sharing the parameters' storage."""
        visible = self.hparams["visible"] if index == 0 else "binary"
        return RBMParams(self.weight[index], self.hidden_bias[index], self.visible_bias[index], visible)

    def rbms(self) -> list[RBMParams]:
        return [self.rbm(i) for i in range(self.depth)]

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as rows, in the first RBM's units: divided by ``visible_std`` (1 unless gaussian)."""
        rows = super().flat(x)
        std = float(self.hparams.get("visible_std", 1.0))
        return rows if std == 1.0 else rows / std

    def _to_input(self, v: torch.Tensor) -> torch.Tensor:
        """First-RBM visible units back to input units (× ``visible_std``)."""
        std = float(self.hparams.get("visible_std", 1.0))
        return v if std == 1.0 else v * std

    # -- probe protocol -------------------------------------------------------------------------
    def activations(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Hidden probabilities p(h_j = 1 | layer below), mean-field up the stack (differentiable)."""
        h = self.flat(x)
        for i in range(self._depth(layer)):
            h = torch.sigmoid(F.linear(h, self.weight[i], self.hidden_bias[i]))
        return h

    def weights(self, layer: str) -> Weights:
        depth = self._depth(layer)
        w = self.weight[depth - 1].detach()
        if depth == 1:  # the filter over the input itself: W (x / σ) = (W / σ) x
            return Weights(w / float(self.hparams.get("visible_std", 1.0)), "input")
        return Weights(w, f"h{depth - 1}")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """One up-down pass: probabilities up through every layer, conditional means back down."""
        h = self.activations(x, f"h{self.depth}")
        for rbm in reversed(self.rbms()):
            h = rbm.visible_mean(h)
        return self._to_input(h).reshape(x.shape)

    @torch.no_grad()
    def clamped_sample(self, layer: str, units: torch.Tensor, *, chains: int, samples: int, every: int,
                       burn_in: int, probabilities: bool, generator: torch.Generator,
                       progress: Progress | None = None) -> torch.Tensor:
        """[units, chains × samples, *input_shape], chain-major: unit i of ``layer`` held at 1.

        Block Gibbs in the RBM of (layer-1, layer) from a random start; every ``every`` steps the
        state of layer-1 goes down through the lower RBMs' p(h_{l-1} | h_l) to pixels (sampled,
        except that ``probabilities`` makes the last step E[x | h_1]). ``progress`` is shown the
        Gibbs steps (optional: the capability's protocol does not require it).
        """
        depth = self._depth(layer)
        units = torch.as_tensor(units, dtype=torch.long)
        out = gibbs_generate(self.rbms(), depth, chains=chains, samples=samples, every=every,
                             burn_in=burn_in, probabilities=probabilities, generator=generator, clamp=units,
                             progress=progress)
        return self._to_input(out).reshape(len(units), chains * samples, *self.input_shape)

    @torch.no_grad()
    def sample(self, *, layer: str | None = None, chains: int = 100, samples: int = 1, every: int = 1000,
               burn_in: int = 0, probabilities: bool = True,
               generator: torch.Generator | None = None, progress: Progress | None = None) -> torch.Tensor:
        """Free-running Gibbs samples ``[chains, samples, *input_shape]`` from the RBM under ``layer``
        (default: the top one), passed down to pixels as in :meth:`clamped_sample`."""
        depth = self._depth(layer or f"h{self.depth}")
        out = gibbs_generate(self.rbms(), depth, chains=chains, samples=samples, every=every,
                             burn_in=burn_in, probabilities=probabilities, generator=generator, progress=progress)
        return self._to_input(out).reshape(chains, samples, *self.input_shape)

    # -- options --------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> ReferenceModel:
        """Checkpoints from before the ``upper_*`` options trained every RBM with ``lr``,
        ``sparsity`` and ``weight_decay``, and on the probabilities below; say so instead of
        filling in today's defaults."""
        hparams = dict(ckpt["hparams"])
        for name in ("lr", "sparsity", "weight_decay"):
            if f"upper_{name}" not in hparams and name in hparams:
                hparams[f"upper_{name}"] = hparams[name]
        hparams.setdefault("upper_k", hparams.get("k", 1))
        hparams.setdefault("upper_data", "probabilities")
        hparams.setdefault("upper_lr_scale", "none")
        return super().from_checkpoint({**ckpt, "hparams": hparams})

    @classmethod
    def layer_sizes(cls, hparams: Mapping[str, Any]) -> list[int]:
        raise NotImplementedError

    @classmethod
    def hparams_from_options(cls, options, *, input_shape, data, lr):  # type: ignore[override]
        """Resolve ``auto`` choices from the data and refuse combinations that cannot train."""
        hp = super().hparams_from_options(options, input_shape=input_shape, data=data, lr=lr)
        sizes = cls.layer_sizes(hp)
        stats = dict(data.get("stats") or {})
        name = data.get("name", "the data")
        if hp["visible"] == "auto":
            hp["visible"] = "binary" if stats.get("binary_like", True) else "gaussian"
        if hp["trainer"] == "auto":
            hp["trainer"] = "cd" if hp["visible"] == "gaussian" else "pcd"
        if hp["visible_std"] is None:
            std = float(stats.get("pixel_std") or 1.0) if hp["visible"] == "gaussian" else 1.0
            hp["visible_std"] = std if std > 0 else 1.0
        if hp["visible"] == "binary":
            if not stats.get("binary_like", True):
                raise OptionError(
                    f"binary visible units need data in [0, 1], but {name!r} has values in "
                    f"[{stats.get('pixel_min', float('nan')):.3g}, {stats.get('pixel_max', float('nan')):.3g}]; "
                    f"use --visible gaussian for real-valued data")
            if not hp["binarize"] and not stats.get("binary", False):
                raise OptionError(
                    f"{name!r} is not binary (it has values between 0 and 1) and a binary RBM needs 0/1 "
                    f"data: add --binarize (each value becomes the probability of a 1, sampled afresh "
                    f"each time a case is used) or use --visible gaussian")
        elif hp["binarize"]:
            raise OptionError("--binarize is for binary visible units; drop it or use --visible binary")
        if hp["trainer"] not in LOCAL_METHODS and hp["k"] != 1:
            raise OptionError(f"--k applies to --trainer cd or mfcd; {hp['trainer']} takes one Gibbs step per update")
        if hp["trainer"] not in LOCAL_METHODS and hp.get("upper_k") not in (None, 1):
            raise OptionError(f"--upper-k applies to --trainer cd or mfcd; {hp['trainer']} takes one Gibbs step per "
                              "update")
        if hp["loglik"] == "exact":
            check_exact(sizes[0], "--loglik exact")
        return _concrete(hp)

    # -- Lightning ------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        return [f"layer {i + 1}" for i in range(self.depth)]

    def _stage_params(self) -> list[nn.Parameter]:
        return [self.weight[self.stage], self.hidden_bias[self.stage], self.visible_bias[self.stage]]

    def _stage_hparam(self, name: str) -> Any:
        """``lr``, ``k``, ``sparsity`` or ``weight_decay`` of the RBM being trained: the first RBM's own,
        ``upper_*`` above it (the upper RBMs are binary whatever the first one is)."""
        if self.stage == 0:
            return self.hparams[name]
        upper = self.hparams.get(f"upper_{name}")
        return self.hparams[name] if upper is None else upper

    def _stage_lr(self) -> float:
        """The rate of the RBM being trained. With ``upper_lr_scale activity`` an RBM above the
        second learns at ``upper_lr`` × (mean of the second RBM's input) / (mean of its own), never
        faster than ``upper_lr``: the
        weight gradient of a binary input grows with how often it is on, and the codes get denser
        going up (on patches ~0.02 at h1, ~0.1 at h2), so at the second RBM's rate the third took
        steps several times larger and every unit learned the layer's overall activity
        (docs/models/rbm.md, "The RBMs above Gaussian visible units")."""
        lr = float(self._stage_hparam("lr"))
        if self.stage < 2 or self.hparams.get("upper_lr_scale") != "activity" or self._activity is None:
            return lr
        return lr * min(1.0, self._activity[0] / max(self._activity[1], 1e-6))

    def configure_optimizers(self) -> Any:
        weight, hbias, vbias = self._stage_params()
        opt = torch.optim.SGD([{"params": [weight], "weight_decay": self._stage_hparam("weight_decay")},
                               {"params": [hbias, vbias], "weight_decay": 0.0}],
                              lr=self._stage_lr(), momentum=self.hparams.get("momentum") or 0.0)
        if self.hparams["lr_schedule"] != "linear":
            return opt  # a constant rate needs no scheduler (and no per-step scheduler call)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def setup(self, stage: str) -> None:
        """Start the visible biases at the data's base rates (Hinton's guide); a resumed fit
        restores its own weights after this hook."""
        dm = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or dm is None:
            return
        with torch.no_grad():
            rows = dm.train_tensor()[:_MONITOR_ROWS]
            data = self._fixed_stage_input(rows, offset=1)
            self._activity = None
            if self.stage >= 2:  # mean input of the second RBM and of this one (see _stage_lr)
                second = self._fixed_stage_input(rows, offset=1, stage=1)
                self._activity = (float(second.mean()), float(data.mean()))
            if self.rbm(self.stage).visible == "binary":
                self.visible_bias[self.stage].copy_(base_rate_bias(data).to(self.visible_bias[self.stage]))
            else:
                self.visible_bias[self.stage].copy_(data.mean(0).to(self.visible_bias[self.stage]))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._estimator is not None:
            checkpoint["vizkit_estimator"] = self._estimator.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._estimator_state = checkpoint.get("vizkit_estimator")

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        rbm = self.rbm(self.stage)
        self._estimator = GradientEstimator(
            self.hparams["trainer"], n_visible=rbm.n_visible, n_hidden=rbm.n_hidden, batch_size=dm.batch_size,
            visible=rbm.visible, k=self._stage_hparam("k"), fast_decay=self.hparams["fast_decay"],
            sparsity=self._stage_hparam("sparsity") or 0.0, sparsity_cost=self.hparams.get("sparsity_cost", 1.0),
            device=self.device, dtype=self.weight[0].dtype)
        if self._estimator_state is not None:  # --resume: the chains go on where they were
            self._estimator.load_state_dict(self._estimator_state)
            self._estimator_state = None
        test = dm.test_tensor()[:_MONITOR_ROWS]
        self._monitor_val = self._fixed_stage_input(test, offset=2).to(self.device)
        self._monitor_train = self._fixed_stage_input(dm.train_tensor()[: len(test)], offset=3).to(self.device)
        self._history = {}
        self._loglik_cache = None
        self._binarize_buffer: torch.Tensor | None = None

    def on_train_start(self) -> None:
        # the estimator writes into .grad in place; Lightning sets grads to None before training.
        # Everything a step needs is looked up once here: per-step Python overhead is what
        # separates a small RBM's update from scikit-learn's.
        weight, hbias, vbias = self._stage_params()
        for p in (weight, hbias, vbias):
            p.grad = torch.zeros_like(p)
        self._step_params = self.rbm(self.stage)
        self._step_grads = RBMParams(weight.grad, hbias.grad, vbias.grad, self._step_params.visible)
        self._optimizer = self.optimizers()
        self._scheduler = self.lr_schedulers() if self.hparams["lr_schedule"] == "linear" else None
        self._world = int(self.trainer.world_size)
        hp = self.hparams
        self._fast_lr = (hp["fast_lr"] if hp["fast_lr"] is not None else hp["lr"]) if hp["trainer"] == "fpcd" else None

    @torch.no_grad()
    def _fixed_stage_input(self, x: torch.Tensor, offset: int, stage: int | None = None) -> torch.Tensor:
        """Inputs of the current stage's RBM (or ``stage``'s) for fixed data (binarised with a fixed
        seed), as probabilities."""
        x = self.flat(x).to(self.weight[0].device, self.weight[0].dtype)
        if self.hparams["binarize"]:
            gen = torch.Generator(device=x.device).manual_seed(12345 + offset)
            x = bernoulli(x, gen)
        for i in range(self.stage if stage is None else stage):
            x = self.rbm(i).hidden_probs(x)
        return x

    @torch.no_grad()
    def _stage_input(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.flat(batch)
        if self.hparams["binarize"]:
            buf = self._binarize_buffer
            if buf is None or buf.shape != x.shape:
                buf = self._binarize_buffer = torch.empty_like(x)
            torch.rand(buf.shape, out=buf)
            x = torch.lt(buf, x, out=buf)
        for i in range(self.stage):
            x = torch.sigmoid(F.linear(x, self.weight[i], self.hidden_bias[i]))
        if self.stage > 0 and self.hparams.get("upper_data") == "samples":
            # (inferred) the greedy bound of Hinton et al. (2006) trains the next RBM on samples of
            # q(h | v); the sampling noise also breaks the one mode (overall activity of the layer
            # below) that an RBM trained on the probabilities gave every unit (docs/models/rbm.md)
            x = torch.bernoulli(x)
        return x

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        grads = self._step_grads
        self._estimator.gradients(self._step_params, self._stage_input(batch), grads)
        if self._world > 1:  # data parallel: average the estimates (each rank keeps its own chains)
            for g in (grads.weight, grads.hidden_bias, grads.visible_bias):
                torch.distributed.all_reduce(g)
                g.div_(self._world)
        self._optimizer.step()
        if self._scheduler is not None:
            self._scheduler.step()
        if self._fast_lr is not None:
            self._estimator.after_update(grads, self._fast_lr)

    @torch.no_grad()
    def on_train_epoch_end(self) -> None:
        rbm = self.rbm(self.stage)
        fe_train = mean_free_energy(rbm, self._monitor_train)
        fe_val = mean_free_energy(rbm, self._monitor_val)
        v = self._monitor_val
        recon = float((rbm.visible_mean(rbm.hidden_probs(v)) - v).pow(2).sum(1).mean())
        values = {"free_energy_train": fe_train, "free_energy_val": fe_val, "free_energy_gap": fe_val - fe_train,
                  "recon_error_val": recon, "lr": self.optimizers().param_groups[0]["lr"]}
        every = self.hparams["loglik_every"]
        if every and (self.current_epoch + 1) % every == 0:
            values.update({k: v for k, v in self._loglik(self.current_epoch + 1, self.trainer).items()
                           if isinstance(v, float)})
        for key, value in values.items():
            self._history.setdefault(key, []).append(float(f"{float(value):.6g}"))
        self.log_dict({k: float(v) for k, v in values.items() if k != "free_energy_gap"})
        self.log("free_energy_gap", fe_val - fe_train, prog_bar=True)

    def after_stage(self, stage: int, trainer: Any, datamodule: Any) -> None:
        """Record the stage's per-epoch monitor and (first RBM) the test log-likelihood."""
        name = self.stages()[stage]
        clock = time.perf_counter()
        loglik = self._loglik(int(trainer.current_epoch), trainer)
        self.metrics.setdefault(name, {}).update(loglik)
        self.metrics[f"{name} per epoch"] = dict(self._history)
        if loglik and training_progress(trainer) is not None:
            print(f"[{self.kind}] {name}: {loglik_line(loglik, self.hparams)}, {duration(time.perf_counter() - clock)}",
                  flush=True)

    def _loglik(self, epochs_done: int, trainer: Any = None) -> dict[str, Any]:
        """Test log-likelihood of the first RBM (per case, nats), computed once per epoch at most,
        with progress shown the way ``trainer`` shows its own (AIS takes minutes)."""
        method = self.hparams["loglik"]
        if self.stage != 0 or method == "none":
            return {}
        key = int(epochs_done)
        if self._loglik_cache is not None and self._loglik_cache[0] == key:
            return self._loglik_cache[1]
        rbm = self.rbm(0).to(dtype=torch.float32)
        progress = training_progress(trainer)
        if method == "auto":  # exact when it takes seconds, not minutes (2^H × D terms)
            method = "exact" if (1 << rbm.n_hidden) * rbm.n_visible <= AUTO_EXACT_TERMS else "ais"
        out: dict[str, Any]
        if method == "exact":
            log_z = log_partition_exact(rbm, progress=progress)
            out = {"log_z": log_z, "loglik_method": "exact"}
        else:
            gen = torch.Generator(device=rbm.weight.device).manual_seed(4321)
            base = base_rate_bias(self._monitor_train) if rbm.visible == "binary" else None
            est = ais_log_partition(rbm, chains=self.hparams["ais_chains"], betas=self.hparams["ais_betas"],
                                    base_visible_bias=base, generator=gen, progress=progress)
            log_z = est.log_z
            out = {"log_z": log_z, "log_z_stderr": est.std_err, "loglik_method": "ais"}
        # the monitors are in the RBM's units x / σ: log p(x) = log p(x / σ) − D log σ
        shift = rbm.n_visible * math.log(float(self.hparams.get("visible_std", 1.0)))
        out["test_loglik"] = float(log_likelihood_exact(rbm, self._monitor_val, log_z=log_z).mean()) - shift
        out["train_loglik"] = float(log_likelihood_exact(rbm, self._monitor_train, log_z=log_z).mean()) - shift
        self._loglik_cache = (key, out)
        return out


def loglik_line(loglik: Mapping[str, Any], hparams: Mapping[str, Any]) -> str:
    """The log-likelihood in words, with AIS's ± (the standard error over the annealing runs, which
    carries over to every log p(v) unchanged; it leaves out the bias of too few temperatures), so a
    number that took minutes is read with its uncertainty."""
    test, train, log_z = loglik["test_loglik"], loglik["train_loglik"], loglik["log_z"]
    if loglik["loglik_method"] == "exact":
        return f"test log-likelihood {test:.2f} nats per case (train {train:.2f}; log Z {log_z:.2f}, exact)"
    return (f"test log-likelihood {test:.2f} ± {loglik['log_z_stderr']:.2f} nats per case (train {train:.2f}; "
            f"log Z {log_z:.2f} by AIS, {hparams['ais_chains']} runs × {hparams['ais_betas']} temperatures: "
            f"--ais-chains for a smaller ±, --ais-betas for less bias)")


def _concrete(hp: dict[str, Any]) -> dict[str, Any]:
    """Replace ``auto``/None defaults that do not depend on the data by their values."""
    hp = dict(hp)
    if hp.get("visible") == "auto":
        hp["visible"] = "binary"
    if hp.get("lr") is None:
        hp["lr"] = 0.02 if hp.get("visible") == "gaussian" else 0.05
    gaussian = hp.get("visible") == "gaussian"
    if hp.get("trainer") == "auto":
        hp["trainer"] = "cd" if gaussian else "pcd"
    if hp.get("momentum") is None:
        hp["momentum"] = 0.9 if gaussian else 0.0
    if hp.get("sparsity") is None:
        hp["sparsity"] = 0.02 if gaussian else 0.0
    if hp.get("visible_std") is None:
        hp["visible_std"] = 1.0
    # the upper RBMs are binary whatever the first one is; the gaussian recipe (lr 0.02, sparsity
    # 0.02, no weight decay) is for the first layer's edge detectors (docs/models/rbm.md, "The RBMs
    # above Gaussian visible units")
    if hp.get("upper_lr") is None:
        hp["upper_lr"] = 0.1 if gaussian else hp["lr"]
    if hp.get("upper_sparsity") is None:
        hp["upper_sparsity"] = 0.0 if gaussian else hp["sparsity"]
    if hp.get("upper_weight_decay") is None:
        hp["upper_weight_decay"] = 2e-4 if gaussian else hp.get("weight_decay", 0.0)
    if hp.get("upper_k") is None:
        # CD-10 above a gaussian RBM: chains of the second RBM trained with CD-1 settled at three
        # times the data's h1 activity, and every clamped h2 unit's mean was one grating there
        # (docs/plugins/clamp.md, "Patches")
        hp["upper_k"] = 10 if gaussian and hp.get("trainer") == "cd" else hp.get("k", 1)
    if hp.get("upper_lr_scale") in (None, "auto"):
        hp["upper_lr_scale"] = "activity" if gaussian else "none"
    if hp.get("upper_data") in (None, "auto"):
        hp["upper_data"] = "samples" if gaussian else "probabilities"
    if hp.get("lr_schedule") == "auto":
        hp["lr_schedule"] = "linear" if hp.get("trainer") == "fpcd" else "constant"
    if hp.get("trainer") == "fpcd" and hp.get("fast_lr") is None:
        hp["fast_lr"] = hp["lr"]
    return hp


class RBM(BoltzmannStack):
    kind = "rbm"
    summary = "restricted Boltzmann machine (binary or Gaussian visible), CD-k / PCD / FPCD"
    train_options = (Option("hidden", int, 500, "hidden units", min=1, max=1_000_000),) + COMMON_OPTIONS

    def __init__(self, input_shape: list[int], hidden: int = 500, **options: Any) -> None:
        super().__init__(input_shape, [int(hidden)], {"hidden": int(hidden)}, **options)

    @classmethod
    def layer_sizes(cls, hparams: Mapping[str, Any]) -> list[int]:
        return [int(hparams["hidden"])]


class DBN(BoltzmannStack):
    kind = "dbn"
    summary = "deep belief net: RBMs stacked greedily, each on the hidden probabilities of the one below"
    train_options = (Option("layers", str, "500,500,1000", "hidden layer sizes, bottom to top"),) + COMMON_OPTIONS

    def __init__(self, input_shape: list[int], layers: str = "500,500,1000", **options: Any) -> None:
        super().__init__(input_shape, parse_layer_sizes(layers), {"layers": str(layers)}, **options)

    @classmethod
    def layer_sizes(cls, hparams: Mapping[str, Any]) -> list[int]:
        return parse_layer_sizes(hparams["layers"])


__all__ = ["COMMON_OPTIONS", "DBN", "RBM", "BoltzmannStack"]
