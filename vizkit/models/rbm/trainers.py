"""CD-k, mean-field CD, PCD and Fast PCD gradient estimates, fused into a few in-place tensor operations.

Every method estimates the log-likelihood gradient as positive statistics (data) minus negative
statistics (samples of the model) and writes its *descent* direction into the parameters' ``.grad``
so that a plain ``torch.optim.SGD`` (weight decay on the weights only, no momentum) applies it:

- ``cd`` (CD-k): the negative chain starts at the data and runs ``k`` full Gibbs steps.
- ``mfcd`` (mean-field CD-k, Welling & Hinton 2002; thesis §1.3.2): CD with every stochastic choice
  replaced by its probability, so the estimate is deterministic (the thesis's fifth trainer in Fig. 3.1).
- ``pcd``: persistent chains (as many as the batch size), never reset; one Gibbs step per update,
  statistics taken on the chains' current state before it advances (Tieleman 2008; thesis §3.2.1).
- ``fpcd``: PCD whose chains run on slow + fast weights; the fast overlay decays by ``fast_decay``
  (19/20) per update and learns with a constant ``fast_lr`` (thesis §3.2.4).

Speed matters here (the benchmark against scikit-learn is per-update cost): positive and negative
rows share one buffer so the weight gradient is a single GEMM over 2B rows, random numbers are drawn
into preallocated buffers and compared in place, and nothing allocates per update.
"""

from __future__ import annotations

from typing import Any

import torch

from .params import RBMParams

METHODS = ("cd", "mfcd", "pcd", "fpcd")
LOCAL_METHODS = ("cd", "mfcd")  # the negative chain starts at the data and runs k steps


class GradientEstimator:
    """Buffers and persistent state of one RBM's training (chains, fast weights)."""

    def __init__(self, method: str, *, n_visible: int, n_hidden: int, batch_size: int, visible: str = "binary",
                 k: int = 1, fast_decay: float = 19 / 20, sparsity: float = 0.0, sparsity_cost: float = 1.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.method, self.k, self.visible = method, int(k), visible
        self.batch_size, self.fast_decay = int(batch_size), float(fast_decay)
        b, d, h = self.batch_size, int(n_visible), int(n_hidden)
        opts = {"device": device, "dtype": dtype}
        # rows [0, b) hold the data (positive phase), rows [b, 2b) the negative particles
        self.v = torch.zeros(2 * b, d, **opts)
        self.p = torch.zeros(2 * b, h, **opts)
        self.h_sample = torch.zeros(b, h, **opts)
        self.u_hidden = torch.empty(b, h, **opts)
        self.u_visible = torch.empty(b, d, **opts)
        self._scale = torch.zeros(2 * b, **opts)
        self._scale_key: tuple[int, int] | None = None
        self.chains_ready = False
        # sparsity target (Lee et al. 2008): the hidden-bias gradient gains cost · (mean p(h|data) − target)
        self.sparsity, self.sparsity_cost = float(sparsity), float(sparsity_cost)
        self._mean_hidden = torch.zeros(h, **opts)
        self.fast: RBMParams | None = None
        if method == "fpcd":
            self.fast = RBMParams(torch.zeros(h, d, **opts), torch.zeros(h, **opts), torch.zeros(d, **opts), visible)
            self._negative = RBMParams(torch.empty(h, d, **opts), torch.empty(h, **opts), torch.empty(d, **opts),
                                       visible)

    @property
    def chains(self) -> torch.Tensor:
        """The persistent particles' visible states (PCD/FPCD), ``[batch_size, n_visible]``."""
        return self.v[self.batch_size:]

    def start_chains(self, v: torch.Tensor) -> None:
        """Set the persistent particles (by default they start at the first training batch)."""
        rows = self.chains
        rows.copy_(v[: len(rows)] if len(v) >= len(rows) else v.repeat(len(rows) // len(v) + 1, 1)[: len(rows)])
        self.chains_ready = True

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on as if never stopped: the particles and the fast weights
        (the other buffers are rewritten by every update)."""
        state: dict[str, Any] = {"chains_ready": self.chains_ready, "chains": self.chains.clone()}
        if self.fast is not None:
            state["fast"] = [t.clone() for t in (self.fast.weight, self.fast.hidden_bias, self.fast.visible_bias)]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.chains.copy_(state["chains"])
        self.chains_ready = bool(state["chains_ready"])
        if self.fast is not None and "fast" in state:
            for overlay, saved in zip((self.fast.weight, self.fast.hidden_bias, self.fast.visible_bias),
                                      state["fast"], strict=True):
                overlay.copy_(saved)

    # -- the update -----------------------------------------------------------------------------
    @torch.no_grad()
    def gradients(self, params: RBMParams, data: torch.Tensor, grads: RBMParams) -> None:
        """Write the descent direction -(⟨v hᵀ⟩_data - ⟨v hᵀ⟩_model) etc. into ``grads`` (in place).

        ``data`` is ``[n, n_visible]`` with n ≤ batch_size; ``grads`` holds the tensors to fill
        (usually the parameters' ``.grad``). Hidden statistics are probabilities (Rao-Blackwellised),
        visible ones are the states.
        """
        n, b = data.shape[0], self.batch_size
        if n > b:
            raise ValueError(f"batch of {n} rows exceeds the estimator's batch size {b}")
        self.v[:n].copy_(data)
        torch.addmm(params.hidden_bias, self.v[:n], params.weight.t(), out=self.p[:n]).sigmoid_()
        if self.sparsity > 0:
            torch.mean(self.p[:n], 0, out=self._mean_hidden)
        if self.method in LOCAL_METHODS:
            self._cd_negative(params, n)
            n_neg = n
        else:
            if not self.chains_ready:
                self.start_chains(data)
            chain_params = self._negative_params(params)
            torch.addmm(chain_params.hidden_bias, self.chains, chain_params.weight.t(), out=self.p[b:]).sigmoid_()
            self._sample_hidden_into(self.p[b:], self.h_sample)  # the particles' next step starts here
            n_neg = b
        # weight each row by -1/n (data) or +1/n_neg (particles), 0 for unused rows of a short
        # batch, so one GEMM over all 2b rows gives d(-log p)/dW = -(pos - neg)
        scale = self._row_scale(n, n_neg)
        self.p.mul_(scale.unsqueeze(1))
        torch.mm(self.p.t(), self.v, out=grads.weight)
        torch.sum(self.p, 0, out=grads.hidden_bias)
        torch.mv(self.v.t(), scale, out=grads.visible_bias)
        if self.sparsity > 0 and self.sparsity_cost > 0:
            self._mean_hidden.sub_(self.sparsity).mul_(self.sparsity_cost)
            grads.hidden_bias.add_(self._mean_hidden)
        if self.method not in LOCAL_METHODS:
            self._sample_visible_into(self._negative_params(params, refresh=False), self.h_sample, self.chains)

    def _row_scale(self, n: int, n_neg: int) -> torch.Tensor:
        if self._scale_key != (n, n_neg):
            b = self.batch_size
            self._scale.zero_()
            self._scale[:n] = -1.0 / n
            self._scale[b : b + n_neg] = 1.0 / n_neg
            self._scale_key = (n, n_neg)
        return self._scale

    @torch.no_grad()
    def after_update(self, grads: RBMParams, fast_lr: float) -> None:
        """FPCD only: θ_fast ← λ θ_fast - fast_lr · grad (the slow update is the optimiser's)."""
        if self.fast is None:
            return
        for overlay, grad in ((self.fast.weight, grads.weight), (self.fast.hidden_bias, grads.hidden_bias),
                              (self.fast.visible_bias, grads.visible_bias)):
            overlay.mul_(self.fast_decay).add_(grad, alpha=-fast_lr)

    # -- pieces ---------------------------------------------------------------------------------
    def _negative_params(self, params: RBMParams, refresh: bool = True) -> RBMParams:
        """Slow weights for PCD; slow + fast overlay for FPCD (computed once per update)."""
        if self.fast is None:
            return params
        neg = self._negative
        if refresh:
            torch.add(params.weight, self.fast.weight, out=neg.weight)
            torch.add(params.hidden_bias, self.fast.hidden_bias, out=neg.hidden_bias)
            torch.add(params.visible_bias, self.fast.visible_bias, out=neg.visible_bias)
        return neg

    def _sample_hidden_into(self, probs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        u = self.u_hidden[: len(probs)]
        torch.rand(u.shape, out=u)
        return torch.lt(u, probs, out=out)

    def _sample_visible_into(self, params: RBMParams, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        torch.addmm(params.visible_bias, h, params.weight, out=out)
        u = self.u_visible[: len(h)]
        if self.visible == "binary":
            out.sigmoid_()
            torch.rand(u.shape, out=u)
            return torch.lt(u, out, out=out)
        torch.randn(u.shape, out=u)
        return out.add_(u)

    def _cd_negative(self, params: RBMParams, n: int) -> None:
        """k full Gibbs steps from the data (mfcd: k mean-field steps, probabilities for states);
        leaves v_k and p(h | v_k) in the negative rows."""
        b = self.batch_size
        neg_v, neg_p, h = self.v[b : b + n], self.p[b : b + n], self.h_sample[:n]
        probs = self.p[:n]
        for _ in range(self.k):
            if self.method == "mfcd":
                torch.addmm(params.visible_bias, probs, params.weight, out=neg_v)
                if self.visible == "binary":
                    neg_v.sigmoid_()
            else:
                self._sample_hidden_into(probs, h)
                self._sample_visible_into(params, h, neg_v)
            torch.addmm(params.hidden_bias, neg_v, params.weight.t(), out=neg_p).sigmoid_()
            probs = neg_p
