"""Tiny real trainings that log one run through several writers at once (one training, many
files). Usage: python train_loggers.py ROOT MODE; the caller sends stdout to a console log.

MODE lightning: TensorBoardLogger(ROOT/tb_logs) + CSVLogger(ROOT/csv_logs), and a hand-written
    print per epoch (the console).
MODE keras: CSVLogger(ROOT/training_log.csv) and TensorBoard event files in Keras' layout
    (ROOT/logs/train, ROOT/logs/validation, `epoch_` tags), written by torch's SummaryWriter from a
    Keras callback: Keras' own TensorBoard callback needs TensorFlow, which is not installed here.
MODE keras-two: two such trainings (other seeds) side by side in ROOT: a_log.csv + logs_a/,
    b_log.csv + logs_b/.
MODE hf: HF Trainer with report_to=tensorboard (ROOT/runs/...) and its checkpoints.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

root, mode = sys.argv[1], sys.argv[2]


def lightning_run() -> None:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from torch import nn

    pl.seed_everything(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] + 0.3 * torch.randn(256) > 0).long()
    ds = torch.utils.data.TensorDataset(x, y)

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(8, 2)

        def training_step(self, batch, i):
            loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch, i):
            self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def on_validation_epoch_end(self):
            m = self.trainer.callback_metrics
            if "train_loss_epoch" in m:
                print(
                    f"epoch {self.current_epoch} train_loss={float(m['train_loss_epoch']):.4f} "
                    f"val_loss={float(m['val_loss']):.4f}",
                    flush=True,
                )

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loggers = [
        TensorBoardLogger(os.path.join(root, "tb_logs"), name="model"),
        CSVLogger(os.path.join(root, "csv_logs"), name="model"),
    ]
    trainer = pl.Trainer(
        max_epochs=4,
        accelerator="cpu",
        logger=loggers,
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(
        Model(),
        torch.utils.data.DataLoader(ds, batch_size=32),
        torch.utils.data.DataLoader(ds, batch_size=64),
    )


def keras_run(csv_path: str, tb_dir: str, seed: int) -> None:
    import keras
    import numpy as np
    from tiny_keras import two_class_model
    from torch.utils.tensorboard import SummaryWriter

    class EpochEvents(keras.callbacks.Callback):
        """What Keras' TensorBoard callback writes per epoch: train/ and validation/ writers,
        `epoch_<metric>` at step = epoch."""

        def on_train_begin(self, logs=None):
            self.w = {s: SummaryWriter(os.path.join(tb_dir, s)) for s in ("train", "validation")}

        def on_epoch_end(self, epoch, logs=None):
            for name, value in (logs or {}).items():
                split = "validation" if name.startswith("val_") else "train"
                self.w[split].add_scalar("epoch_" + name.removeprefix("val_"), value, epoch)
            for w in self.w.values():
                w.flush()

        def on_train_end(self, logs=None):
            for w in self.w.values():
                w.close()

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype("int64")
    model = two_class_model()
    model.fit(
        x[100:],
        y[100:],
        validation_data=(x[:100], y[:100]),
        epochs=5,
        batch_size=32,
        verbose=2,
        callbacks=[keras.callbacks.CSVLogger(csv_path), EpochEvents()],
    )


def hf_run() -> None:
    import torch
    from tiny_bert import TokenLabels, cpu_args, tiny_bert
    from transformers import Trainer

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def data(n: int) -> TokenLabels:
        labels = (torch.rand(n, generator=g) < 0.5).long()
        ids = torch.randint(5, 50, (n, 12), generator=g)
        ids[:, 0] = labels + 1
        return TokenLabels(ids, labels)

    model = tiny_bert()
    args = cpu_args(
        root,
        max_steps=20,
        eval_steps=10,
        logging_steps=2,
        save_steps=10,
        report_to=["tensorboard"],
        learning_rate=1e-3,
    )
    Trainer(model=model, args=args, train_dataset=data(200), eval_dataset=data(64)).train()


if mode == "lightning":
    lightning_run()
elif mode == "keras":
    keras_run(os.path.join(root, "training_log.csv"), os.path.join(root, "logs"), 0)
elif mode == "keras-two":
    keras_run(os.path.join(root, "a_log.csv"), os.path.join(root, "logs_a"), 1)
    keras_run(os.path.join(root, "b_log.csv"), os.path.join(root, "logs_b"), 2)
elif mode == "hf":
    hf_run()
