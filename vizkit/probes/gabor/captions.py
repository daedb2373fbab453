"""The gabor captions: what each figure shows, with the run's numbers filled in."""

from __future__ import annotations

#: The parameter histograms (no numbers of the run in it).
HISTOGRAMS_CAPTION = (
    "How the filters' stripes are oriented and spaced, and how well a Gabor function fits each filter, "
    "as histograms over all filters. Orientation of the carrier (0° = vertical stripes, the carrier varies "
    "along x), spatial frequency (cycles/pixel) and R² of every filter; Gabor-like filters in colour, the "
    "others grey. Dashed lines: the thresholds of the measure.")

#: The envelope tiling (no numbers of the run in it).
TILING_CAPTION = (
    "Where the Gabor-like filters sit on the input patch, how large they are and which way they point, one "
    "ellipse per filter. Each ellipse is a fitted envelope (1σ along the carrier and along the edge) at its "
    "centre on the filter's field, with a stroke across it along the carrier "
    "direction; colour = spatial frequency. A good model of natural images tiles the patch with "
    "centres, orientations and frequencies.")


def headline(layer: str, count: int, n: int, fraction: float) -> str:
    """``layer: count/n filters Gabor-like (pct%)``, one decimal below 10%, the titles' and captions' head."""
    pct = f"{100 * fraction:.1f}" if 0 < fraction < 0.1 else f"{100 * fraction:.0f}"
    return f"{layer}: {count}/{n} filters Gabor-like ({pct}%)"


def fits_caption(show: int, n: int, criteria: str, head: str, median_r2: float) -> str:
    """The filter | fit | residual rows of the first ``show`` of ``n`` units."""
    return (
        f"How well a Gabor function (stripes under a smooth bump) matches each of the first {show} of {n} "
        f"filters: the filter, the fitted Gabor and what the fit leaves out, in blocks of three rows. "
        f"The fit is a 2-D Gabor and the residual is filter − fit, all on "
        f"the filter's own colour scale (grey = 0); R² under each filter, "
        f"a green frame marks a Gabor-like filter ({criteria}). {head}; median R² "
        f"{median_r2:.2f}. Reference on 12×12 natural patches: FastICA ≈ 58%, white noise 0%.")
