"""The capsule autoencoder (Tieleman 2014, ch. 2): poses, the batched renderer, the model.

``poses`` holds the "nice" pose parametrisation, its world→template matrix, composition and the
output model; ``renderer`` draws posed templates; ``model`` is the LightningModule ``capsule``;
``evaluate`` the chapter's measurements (reconstruction error, 25-label clustering, baselines).
"""
