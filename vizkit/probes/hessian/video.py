"""Frames of an invariance video: the image moving along a geodesic, with the activation drawn in.

Each frame shows the input x(t) on the left and, on the right, the unit's activation along the
whole path with a marker at the current angle; the number itself is printed under the image. The
frames are drawn with matplotlib's Agg canvas into RGB arrays. The static parts (axes, the curve)
are drawn once per video and every frame only re-draws the image, the marker and the text onto a
saved copy of that background (blitting), which is several times faster than a full redraw.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Pixel size of the frames (width, height); even, so the MP4 encoder takes them unchanged.
FRAME_SIZE = (480, 240)
_DPI = 80


def render_path_video(
    images: np.ndarray,
    angles_deg: np.ndarray,
    activations: np.ndarray,
    *,
    peak: float,
    title: str,
) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 for one path.

    ``images`` [T, h, w] or [T, h, w, 3] are already scaled to [0, 1] (one scale for the whole path,
    so contrast changes stay visible); ``activations`` [T] along ``angles_deg`` [T]; ``peak`` is
    the activation at the optimum, for the percentage printed under the image.
    """
    fig = Figure(figsize=(FRAME_SIZE[0] / _DPI, FRAME_SIZE[1] / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    ax_img = fig.add_axes((0.02, 0.17, 0.42, 0.7))
    ax_curve = fig.add_axes((0.58, 0.25, 0.39, 0.6))
    fig.text(0.5, 0.95, title, ha="center", va="top", fontsize=9)
    cmap = None if images.ndim == 4 else "gray"
    image = ax_img.imshow(images[0], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", animated=True)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_curve.plot(angles_deg, activations, color="tab:blue", linewidth=1.5)
    ax_curve.axvline(0.0, color="0.75", linewidth=0.8)
    ax_curve.set_xlabel("angle t along the geodesic (degrees)", fontsize=7)
    ax_curve.set_ylabel("activation", fontsize=7)
    ax_curve.tick_params(labelsize=6)
    span = float(np.ptp(activations)) or max(abs(float(activations.mean())), 1.0) * 0.05
    ax_curve.set_ylim(float(activations.min()) - 0.08 * span, float(activations.max()) + 0.08 * span)
    (marker,) = ax_curve.plot([angles_deg[0]], [activations[0]], "o", color="tab:red", markersize=6, animated=True)
    label = fig.text(0.23, 0.04, "", ha="center", va="bottom", fontsize=9, family="monospace", animated=True)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    frames = np.empty((len(images), FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
    for i, (img, angle, value) in enumerate(zip(images, angles_deg, activations)):
        canvas.restore_region(background)
        image.set_data(img)
        marker.set_data([angle], [value])
        share = f" ({100 * value / peak:.1f}%)" if peak != 0 else ""
        label.set_text(f"t={angle:+6.1f}°  h={value:.4g}{share}")
        ax_img.draw_artist(image)
        ax_curve.draw_artist(marker)
        fig.draw_artist(label)
        frames[i] = np.asarray(canvas.buffer_rgba())[..., :3]
    return frames


def ping_pong(frames: np.ndarray) -> np.ndarray:
    """−θ → θ → −θ, without repeating the end frames, so the looped video has no jump."""
    if len(frames) < 3:
        return frames
    return np.concatenate([frames, frames[-2:0:-1]])
