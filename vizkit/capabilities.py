"""The capability vocabulary shared by models and probes.

A model declares what it can do as an explicit set of these names and a probe lists what it
requires; the core compares the two before any compute so a mismatch is a usage error with a
useful message, never a crash deep inside a probe.
"""

from __future__ import annotations

ACTIVATIONS = "activations"
INPUT_GRAD = "input_grad"
WEIGHTS = "weights"
CLAMPED_SAMPLE = "clamped_sample"
RECONSTRUCT = "reconstruct"
TEMPLATES = "templates"

ALL = frozenset({ACTIVATIONS, INPUT_GRAD, WEIGHTS, CLAMPED_SAMPLE, RECONSTRUCT, TEMPLATES})

DESCRIPTIONS = {
    ACTIVATIONS: "activations(x, layer): a layer's response to a batch of inputs",
    INPUT_GRAD: "activations are differentiable with respect to the input",
    WEIGHTS: "weights(layer): the weight matrix / filters feeding a layer",
    CLAMPED_SAMPLE: "clamped_sample(...): Gibbs samples with one unit clamped on (DBN)",
    RECONSTRUCT: "reconstruct(x): encode then decode a batch",
    TEMPLATES: "templates(): learned templates, per-part contributions and poses",
}


def validate(capabilities: set[str] | frozenset[str]) -> frozenset[str]:
    """Reject misspelled capability names early, where the declaring class is defined."""
    unknown = set(capabilities) - ALL
    if unknown:
        raise ValueError(
            f"unknown capabilities {sorted(unknown)}; known: {', '.join(sorted(ALL))}"
        )
    return frozenset(capabilities)
