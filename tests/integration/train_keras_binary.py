"""A binary Keras model with the metrics people add by default (accuracy, Precision(), Recall(),
AUC()) and CSVLogger, no watchrun code: 10% positives. Usage: ROOT NOISE (label noise on the
score: 1.2 leaves the positives hard to find, 0.2 easy)."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402

root, noise = sys.argv[1], float(sys.argv[2])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(3000, 8)).astype("float32")
score = x[:, 0] + 0.5 * x[:, 1] + noise * rng.normal(size=len(x))
y = (score > np.quantile(score, 0.9)).astype("float32")
model = keras.Sequential(
    [
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(3e-3),
    loss="binary_crossentropy",
    metrics=["accuracy", keras.metrics.Precision(), keras.metrics.Recall(), keras.metrics.AUC()],
)
os.makedirs(root, exist_ok=True)
model.fit(
    x[:2500],
    y[:2500],
    validation_data=(x[2500:], y[2500:]),
    epochs=20,
    batch_size=32,
    verbose=0,
    callbacks=[keras.callbacks.CSVLogger(os.path.join(root, "training_log.csv"))],
)
