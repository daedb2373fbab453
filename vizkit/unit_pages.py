"""A gallery's unit pages: one page per unit with every view the recipe computed for it, side by side.

OpenAI Microscope shows a unit of an ImageNet model as its dataset examples, its feature
visualisation and its attributions next to each other, because each method alone misleads
(a top-k grid cannot tell a texture from an object; an optimum cannot say which real images
drive the unit). This module does the same locally for any model: every probe result of a layer
that has a per-unit picture (:meth:`vizkit.Probe.unit_view`) contributes a panel to the page of
each of its units, linked from the layer's cards in the gallery.

Pages live in ``<out>/units/<model>/<layer>/unit-<n>.html``; their pictures are drawn from the
results' arrays (so reused results get pages too) and the units' own files (videos) are linked
where the probe wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .output import atomic_write_bytes, check_slug, inside, render_page, safe_href

#: at most this many unit pages per layer unless the recipe says otherwise (``unit_pages = N``)
DEFAULT_PER_LAYER = 16


def layer_slug(layer: str) -> str:
    """A layer name as one safe path segment: ``relu#2`` (second call) becomes ``relu_call2``."""
    return check_slug(layer.replace("#", "_call"), "layer", allow_dots=True)


@dataclass
class LayerResults:
    """The finished probe results of one model's layer, in recipe order."""

    model: str
    layer: str
    runs: list[tuple[Any, Any, str]] = field(default_factory=list)  # (probe instance, Result, result dir)

    def units(self, limit: int) -> list[int]:
        """Units with a view in some result, in first-seen order, at most ``limit``."""
        seen: dict[int, None] = {}
        for probe, result, _ in self.runs:
            for i, unit in enumerate(result.meta.get("units", [])):
                if int(unit) not in seen and probe.unit_view(result, i) is not None:
                    seen[int(unit)] = None
        return list(seen)[:limit]

    def folder(self) -> str:
        return f"units/{check_slug(self.model, 'model')}/{layer_slug(self.layer)}"


def write_unit_pages(out: Path, layer: LayerResults, limit: int, gallery_title: str) -> dict[int, str]:
    """Write the layer's unit pages under ``out``; ``{unit: link from the gallery index}``."""
    from matplotlib.figure import Figure

    units = layer.units(limit)
    folder = inside(out, out / layer.folder())
    links: dict[int, str] = {}
    for unit in units:
        panels = []
        for probe, result, result_dir in layer.runs:
            computed = [int(u) for u in result.meta.get("units", [])]
            view = probe.unit_view(result, computed.index(unit)) if unit in computed else None
            if view is None:
                continue
            image = None
            if isinstance(view.figure, Figure):
                name = f"unit-{unit}-{check_slug(probe.name, 'probe')}.png"
                target = inside(out, folder / name)
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, _png(view.figure))
                image = safe_href(name)
            files = [{"src": f"../../../{safe_href(result_dir + '/' + f)}", "name": f} for f in view.files]
            panels.append({"probe": probe.name, "summary": probe.summary, "image": image, "files": files,
                           "text": view.text, "result": f"../../../{safe_href(result_dir + '/index.html')}"})
        page = render_page("unit.html", title=f"{layer.model} {layer.layer} unit {unit}", model=layer.model,
                           layer=layer.layer, unit=unit, panels=panels, gallery=gallery_title,
                           others=[{"unit": u, "href": safe_href(f"unit-{u}.html")} for u in units])
        target = inside(out, folder / f"unit-{unit}.html")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, page.encode())
        links[unit] = safe_href(f"{layer.folder()}/unit-{unit}.html")
    return links


def _png(figure: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
