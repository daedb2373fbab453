"""The capsule chapter's measurements: reconstruction error and 25-label clustering, with baselines.

* Per-pixel MSE with and without dropout, and as a % of the data variance: the mean over pixels of
  each pixel's variance across the images of that split (the definition the thesis's numbers
  imply: 0.0057 ≈ 9% of ≈ 0.063; docs/methods.md §capsule).
* Clustering (thesis §2.6.6): the cluster of an image is the manager's noise-free choice; each
  cluster gets the label of its most confidently assigned training image; a test image gets its
  cluster's label. K-means on pixels is scored by the same protocol (most confident = nearest to
  the centroid), and PCA with as many components as one CC's code is the reconstruction baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _chunks(x: torch.Tensor, size: int = 500) -> list[torch.Tensor]:
    return [x[i : i + size] for i in range(0, len(x), size)]


def data_variance(x: torch.Tensor | np.ndarray) -> float:
    """Mean over pixels of the per-pixel variance across images."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return float(flat.var(axis=0).mean())


@torch.no_grad()
def reconstruction_mse(model: Any, x: torch.Tensor, *, dropout: bool, seed: int = 0) -> float:
    """Per-pixel MSE of ``model``'s reconstructions; ``dropout`` runs it in training mode (dropout
    and manager noise on, seeded) as the thesis's "with dropout" numbers do."""
    was = model.training
    model.train(dropout)
    torch.manual_seed(seed)
    total = 0.0
    for chunk in _chunks(x):
        rec = model.forward_parts(chunk)["reconstruction"]
        total += float((rec - chunk.reshape(rec.shape)).double().square().sum())
    model.train(was)
    return total / x.numel()


@torch.no_grad()
def component_probabilities(model: Any, x: torch.Tensor) -> np.ndarray:
    was = model.training
    model.eval()
    out = torch.cat([model.components(c) for c in _chunks(x)]).double().numpy()
    model.train(was)
    return out


@torch.no_grad()
def forced(model: Any, x: torch.Tensor, classify: Any = None, chunk: int = 2000) -> dict[str, np.ndarray]:
    """Every image redrawn by every component (y one-hot, the component's own pose; Fig. 2.19).

    Returns ``errors`` ``[n, K]`` (per-pixel MSE) and, when ``classify`` (flat images ``[m, pixels]``
    → labels) is given, ``predicted`` ``[n, K]``: its label for each forced reconstruction. Images
    × components go through the model in chunks of ``chunk`` renders.
    """
    was = model.training
    model.eval()
    k = model.n_ccs
    rep = x.repeat_interleave(k, 0)
    comp = torch.arange(k, device=x.device).repeat(len(x))
    errors, predicted = [], []
    for start in range(0, len(rep), chunk):
        xs = rep[start:start + chunk]
        rec = model.forward_parts(xs, component=comp[start:start + chunk])["reconstruction"]
        flat = rec.reshape(len(xs), -1)
        errors.append((flat - xs.reshape(flat.shape)).double().square().mean(1).cpu().numpy())
        if classify is not None:
            predicted.append(np.asarray(classify(flat.double().cpu().numpy())))
    model.train(was)
    out = {"errors": np.concatenate(errors).reshape(len(x), k)}
    if classify is not None:
        out["predicted"] = np.concatenate(predicted).reshape(len(x), k)
    return out


def digit_classifier(x: torch.Tensor, labels: np.ndarray) -> Any:
    """A linear classifier on pixels (scikit-learn's logistic regression): the judge of what a
    forced reconstruction depicts, trained on the training images only."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300).fit(x.reshape(len(x), -1).double().cpu().numpy(), labels).predict


def cluster_error(clusters_train: np.ndarray, confidence_train: np.ndarray, labels_train: np.ndarray,
                  clusters_test: np.ndarray, labels_test: np.ndarray, n_clusters: int) -> dict[str, Any]:
    """Test error when each cluster is labelled by its most confident training member.

    Test images in a cluster that got no training image count as errors.
    """
    names = np.full(n_clusters, -1, dtype=np.int64)
    for c in range(n_clusters):
        members = np.flatnonzero(clusters_train == c)
        if len(members):
            names[c] = labels_train[members[np.argmax(confidence_train[members])]]
    predicted = names[clusters_test]
    return {
        "error": float(np.mean(predicted != labels_test)),
        "cluster_labels": names.tolist(),
        "labels_used": int((names >= 0).sum()),
        "clusters_used": int(len(np.unique(clusters_train))),
    }


def capsule_cluster_error(model: Any, xtr: torch.Tensor, ytr: np.ndarray, xte: torch.Tensor,
                          yte: np.ndarray) -> dict[str, Any]:
    """Clustering, the manager's confidence (training images) and, on the held-out images, how
    far the components specialise (:mod:`vizkit.mixtures`, judged by a pixel classifier)."""
    from vizkit import mixtures

    ptr, pte = component_probabilities(model, xtr), component_probabilities(model, xte)
    ctr = ptr.argmax(1)
    out = cluster_error(ctr, ptr[np.arange(len(ctr)), ctr], np.asarray(ytr), pte.argmax(1), np.asarray(yte),
                        ptr.shape[1])
    out.update(manager_confidence(ptr))
    judged = forced(model, xte, digit_classifier(xtr, np.asarray(ytr)))
    spec = mixtures.specialisation(judged["errors"], pte.argmax(1))
    draws = mixtures.wrong_component_draws(judged["predicted"], np.asarray(yte), np.asarray(out["cluster_labels"]))
    out["specialisation"] = {"ratio": [float(r) for r in spec["ratio"]], "median_ratio": spec["median_ratio"],
                             "chosen_is_best": spec["chosen_is_best"], "wrong_draws_own": draws["own"],
                             "wrong_draws_input": draws["input"]}
    return out


def manager_confidence(y: np.ndarray) -> dict[str, float]:
    """The thesis's manager diagnostics: fraction with max y ≥ 0.99 / ≥ 0.9, entropy as % of log K."""
    k = y.shape[1]
    entropy = -(y * np.log(np.clip(y, 1e-30, None))).sum(1)
    return {
        "max_y_ge_0.99": float(np.mean(y.max(1) >= 0.99)),
        "max_y_ge_0.9": float(np.mean(y.max(1) >= 0.9)),
        "entropy_pct_of_logK": float(100 * entropy.mean() / np.log(k)) if k > 1 else 0.0,
    }


def kmeans_cluster_error(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray,
                         k: int = 25, seed: int = 0) -> dict[str, Any]:
    """K-means on pixels, scored by the capsule protocol (most confident = nearest the centroid)."""
    from sklearn.cluster import KMeans

    ftr, fte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(ftr)
    dist = km.transform(ftr)
    ctr = km.labels_
    return cluster_error(ctr, -dist[np.arange(len(ctr)), ctr], np.asarray(ytr), km.predict(fte), np.asarray(yte), k)


def pca_mse(xtr: np.ndarray, xte: np.ndarray, n_components: int) -> dict[str, float]:
    """Per-pixel MSE of PCA reconstructions (fitted on the training split) with ``n_components``."""
    from sklearn.decomposition import PCA

    ftr, fte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    pca = PCA(n_components=n_components, random_state=0).fit(ftr)
    rec = {name: pca.inverse_transform(pca.transform(f)) for name, f in (("train", ftr), ("test", fte))}
    return {f"{name}_mse": float(np.mean((rec[name] - f) ** 2)) for name, f in (("train", ftr), ("test", fte))}


def evaluate(model: Any, datamodule: Any) -> dict[str, Any]:
    """MSE train/held-out with and without dropout, % of variance, and clustering where labelled."""
    xtr, xte = datamodule.train_tensor(), datamodule.test_tensor()
    xtr, xte = xtr.to(model.device), xte.to(model.device)
    out: dict[str, Any] = {}
    for split, x in (("train", xtr), ("test", xte)):
        var = data_variance(x.cpu())
        for tag, drop in (("", False), ("_dropout", True)):
            mse = reconstruction_mse(model, x, dropout=drop)
            out[f"{split}_mse{tag}"] = mse
            out[f"{split}_pct_var{tag}"] = 100.0 * mse / var
    ytr, yte = datamodule.train_labels(), datamodule.test_labels()
    if ytr is not None and yte is not None and model.n_ccs > 1:
        out["clustering"] = capsule_cluster_error(model, xtr, ytr.numpy(), xte, yte.numpy())
    return out
