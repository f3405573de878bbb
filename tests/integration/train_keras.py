"""A tiny real Keras 3 run (torch backend) on the CPU. Usage: python train_keras.py DIR EPOCHS MODE
MODE: imbalanced (a 90/10 task with no signal: the minority class is never predicted) or long."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from tiny_keras import two_class_model  # noqa: E402

from watchrun.integrations.keras import WatchrunCallback  # noqa: E402

run_dir, epochs, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(600, 6)).astype("float32")
y = (rng.random(600) < (0.1 if mode == "imbalanced" else 0.5)).astype("int64")
model = two_class_model()
os.makedirs(run_dir, exist_ok=True)
cb = WatchrunCallback(run_dir, validation_data=(x[:200], y[:200]), label_names=["common", "rare"])
model.fit(
    x[200:],
    y[200:],
    validation_data=(x[:200], y[:200]),
    epochs=epochs,
    batch_size=16,
    verbose=0,
    callbacks=[cb, keras.callbacks.CSVLogger(os.path.join(run_dir, "training_log.csv"))],
)
np.save(os.path.join(run_dir, "final_preds.npy"), model.predict(x[:200], verbose=0).argmax(-1))
