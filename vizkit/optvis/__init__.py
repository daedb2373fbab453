"""Feature visualisation in lucent's vocabulary, designed for batches: ``vizkit.optvis``.

``render(model, objective, param=..., transforms=..., thresholds=...)`` optimises images so a
network does what ``objective`` asks: :mod:`~vizkit.optvis.objectives` (what to maximise, with
arithmetic), :mod:`~vizkit.optvis.param` (how images are parameterised), :mod:`~vizkit.optvis.transforms`
(what random changes the optimum must survive) and :mod:`~vizkit.optvis.render` (the loop, with the
constraints). Each part can be replaced by the user's own object or callable without editing vizkit::

    from vizkit import optvis
    from vizkit.optvis import objectives as O

    images = optvis.render(model, O.channel("conv2", 3) - 0.5 * O.channel("conv2", 5),
                           param="fourier", transforms="standard", thresholds=(64, 256),
                           constraint=optvis.SigmoidRange()).images

The ``actmax`` probe is built on it; see docs/plugins/actmax.md for the recipes it offers.
"""

from . import objectives, param, transforms
from .expression import parse
from .render import Box, Constraint, Rendering, SigmoidRange, Sphere, render

__all__ = ["Box", "Constraint", "Rendering", "SigmoidRange", "Sphere", "objectives", "param", "parse", "render",
           "transforms"]
