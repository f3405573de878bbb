"""What the Keras scripts share: a small two-class model (torch backend, as Keras runs here
without TensorFlow), compiled. Imported by the scripts as a sibling module."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402


def two_class_model(features: int = 6) -> keras.Model:
    """Dense(8, relu) then a 2-way softmax, Adam(1e-2), sparse cross-entropy and accuracy."""
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
