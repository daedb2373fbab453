"""Train the example ResNet-18 briefly on the colour photographs shipped with scikit-learn and
scikit-image (no downloads): which of seven photographs a 64x64 crop comes from.

Writes, next to this file:
- ``r18.pt``: the state dict (``torch.save(model.state_dict(), ...)``), what ``--weights`` reads;
- ``photos/``: 15 held-out crops as PNG files (the right fifth of each photograph, never trained
  on), named ``<photograph>-<n>.png`` - a folder of your own images, as ``-o data photos`` reads it;
- ``photos.npz``: the same 15 crops (``x``), their photograph (``y``) and the class names
  (``class_names``), which class-based probes show instead of numbers.

Run: ``python train.py`` (about a minute on two cores; ``--steps`` to change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from mynets import resnet18
from torch import nn

HERE = Path(__file__).resolve().parent
PHOTOS = ("china", "flower", "astronaut", "coffee", "chelsea", "rocket", "motorcycle")
SIDE = 64
TRAIN_FRACTION = 0.8  # crops for training come from the left 80% of each photograph


def photograph(name: str) -> np.ndarray:
    """One photograph as float32 [3, H, W] in [0, 1]."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3].transpose(2, 0, 1), dtype=np.float32) / 255


def crops(images: list[np.ndarray], n: int, part: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random crops per photograph from its training (left) or held-out (right) region."""
    xs, ys = [], []
    for label, image in enumerate(images):
        _, h, w = image.shape
        cut = int(w * TRAIN_FRACTION)
        lo, hi = (0, cut - SIDE) if part == "train" else (cut, w - SIDE)
        for _ in range(n):
            r, c = rng.integers(0, h - SIDE + 1), rng.integers(lo, hi + 1)
            xs.append(image[:, r:r + SIDE, c:c + SIDE])
            ys.append(label)
    return np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [photograph(name) for name in PHOTOS]
    model = resnet18(len(PHOTOS))
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for step in range(args.steps):
        x, y = crops(images, 8, "train", rng)
        x = torch.from_numpy(x)
        flip = torch.rand(len(x)) < 0.5
        x[flip] = x[flip].flip(-1)
        loss = loss_fn(model(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}", flush=True)
    model.eval()
    test_x, test_y = crops(images, 20, "test", np.random.default_rng(1))
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean()
    print(f"held-out accuracy {accuracy:.2f} on {len(test_y)} crops (chance {1 / len(PHOTOS):.2f})")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "r18.pt")
    shown = np.random.default_rng(2).choice(len(test_y), 15, replace=False)
    folder = args.out / "photos"
    folder.mkdir(exist_ok=True)
    from PIL import Image

    for n, i in enumerate(sorted(shown)):
        pixels = (test_x[i].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{PHOTOS[test_y[i]]}-{n:02d}.png")
    np.savez(args.out / "photos.npz", x=test_x[np.sort(shown)], y=test_y[np.sort(shown)],
             class_names=np.asarray(PHOTOS))
    print(f"wrote {args.out / 'r18.pt'}, {folder}/ (15 images) and {args.out / 'photos.npz'}")


if __name__ == "__main__":
    main()
