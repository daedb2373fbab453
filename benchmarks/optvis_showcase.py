"""Diversity and direction objectives on the photos network (issue 22), as one figure and a table.

    python benchmarks/optvis_showcase.py --out docs/img/optvis-diversity-directions.png

Trains the photos convnet (3 epochs, seed 0, about 30 s on one core), then renders with
``vizkit.optvis`` and the colour recipe (Fourier parameterisation with decorrelated colour, the
standard transforms, Adam 0.05, a sigmoid range, 512 steps):

* one ``pool2`` channel, 6 restarts, alone and with ``+ w·diversity(pool2)``: the restarts of the
  plain objective converge to near-copies of one pattern (shifted), the diverse ones differ;
  measured as the mean cosine between the restarts' centred images and between their ``pool2``
  Gram matrices (the quantity diversity lowers);
* ``direction(pool2, v)`` for two random unit directions and for the class-mean directions of four
  photographs (mean ``pool2`` channel vector of the class's held-out crops minus that of all crops),
  with the network's probability of that class for each class-mean optimum (chance 0.10).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import vizkit  # noqa: E402
from vizkit import optvis  # noqa: E402
from vizkit.datasets.photos import PHOTOGRAPHS  # noqa: E402
from vizkit.optvis import objectives as O  # noqa: E402

RECIPE = dict(param="fourier", transforms="standard", constraint=None, optimizer="adam", lr=0.05, thresholds=(512,))


def train(work: Path) -> object:
    from vizkit.training import train as train_model

    path = work / "convnet-photos.pt"
    if not path.exists():
        train_model("convnet", "photos", out=path, epochs=3, progress=False, log_dir=work / "logs")
    return vizkit.load(path)


def mean_cosine(flat: torch.Tensor) -> float:
    flat = flat - flat.mean(1, keepdim=True)
    cos = torch.nn.functional.cosine_similarity(flat[:, None], flat[None], dim=2)
    return float(cos[~torch.eye(len(cos), dtype=torch.bool)].mean())


def gram_cosine(model: object, images: torch.Tensor, layer: str) -> float:
    with torch.no_grad():
        act = vizkit.layer_activations(model, images, [layer])[layer].flatten(2)
    gram = torch.einsum("ncp,ndp->ncd", act, act).flatten(1)
    g = torch.nn.functional.normalize(gram, dim=1)
    cos = g @ g.T
    return float(cos[~torch.eye(len(cos), dtype=torch.bool)].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the figure (PNG)")
    parser.add_argument("--work", type=Path, default=None, help="where the trained model is kept (default: a temp dir)")
    parser.add_argument("--channel", type=int, default=5)
    parser.add_argument("--diversity", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="optvis-showcase-"))
    work.mkdir(parents=True, exist_ok=True)
    model = train(work)
    print(f"photos convnet: test accuracy {model.metrics['test']['accuracy']:.3f} (chance 0.10)")
    layer, c = "pool2", args.channel
    sigmoid = optvis.SigmoidRange()
    kwargs = {**RECIPE, "constraint": sigmoid, "seed": 0}
    plain = optvis.render(model, O.channel(layer, c), restarts=6, **kwargs)
    diverse = optvis.render(model, O.channel(layer, c) + args.diversity * O.diversity(layer), restarts=6, **kwargs)
    plain_act = plain.values
    with torch.no_grad():
        diverse_act = vizkit.layer_activations(model, diverse.images, [layer])[layer][:, c].mean((1, 2))
    rows = [
        ("plain", plain.images, [f"{v:.2f}" for v in plain_act]),
        (f"+{args.diversity:g} diversity", diverse.images, [f"{v:.2f}" for v in diverse_act]),
    ]
    print(f"channel {c} of {layer}, 6 restarts: mean cosine between restarts (centred images) "
          f"{mean_cosine(plain.images.flatten(1)):.3f} plain vs {mean_cosine(diverse.images.flatten(1)):.3f} "
          f"with diversity; between their {layer} Gram matrices {gram_cosine(model, plain.images, layer):.3f} vs "
          f"{gram_cosine(model, diverse.images, layer):.3f}; channel activation {plain_act.mean():.2f} vs "
          f"{diverse_act.mean():.2f}")

    examples = vizkit.probe_inputs.load_examples(model, None, "auto", 0)
    classes = [1, 3, 5, 8]
    vectors = [O.random_vector(0), O.random_vector(1)] + [
        O.class_mean_vector(model, examples.images, examples.labels, layer, k) for k in classes]
    names = ["random(0)", "random(1)"] + [f"classmean({PHOTOGRAPHS[k]})" for k in classes]
    directions = optvis.render(model, [O.direction(layer, v) for v in vectors], restarts=1, **kwargs)
    with torch.no_grad():
        probs = torch.softmax(model.activations(directions.images, "logits"), dim=1)
    labels = [f"{n}\ncos {v:.2f}" for n, v in zip(names, directions.values, strict=True)]
    for i, k in enumerate(classes):
        p = float(probs[2 + i, k])
        labels[2 + i] += f", p={p:.2f}"
        print(f"direction(pool2, classmean({PHOTOGRAPHS[k]})): cosine {float(directions.values[2 + i]):.3f}, "
              f"network's probability of {PHOTOGRAPHS[k]} {p:.2f}, top class {PHOTOGRAPHS[int(probs[2 + i].argmax())]}")
    for i in range(2):
        print(f"direction(pool2, random({i})): cosine {float(directions.values[i]):.3f}")
    rows.append(("directions", directions.images, labels))

    cols = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 1.9, len(rows) * 2.3 + 0.6), squeeze=False)
    for r, (title, images, captions) in enumerate(rows):
        for j in range(cols):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(images):
                ax.axis("off")
                continue
            ax.imshow(images[j].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xlabel(captions[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(title, fontsize=9)
    fig.suptitle(f"photos convnet, colour recipe. Rows 1-2: channel {c} of {layer}, 6 restarts, without and with a "
                 f"diversity term (activation under each). Row 3: direction objectives in {layer} (cosine reached; "
                 f"p = the network's probability of that photograph)", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
