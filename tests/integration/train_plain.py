"""Tiny real trainings with each library's own default logging and no watchrun code at all,
as most runs that watchrun will meet are written.

Usage: python train_plain.py FRAMEWORK ROOT MODE... (each mode is written to ROOT/MODE; one
process for all of them, so the libraries are imported once)
FRAMEWORK: lightning (CSVLogger + TensorBoardLogger), keras (CSVLogger), torch (SummaryWriter,
the tutorials' `Loss/train`, `Loss/test`), hf (Trainer, report_to tensorboard, trainer_state.json).
MODE: healthy (enough clean data, a small model), long (the same for 40 epochs at a lower
learning rate, decayed to 0 by HF: it converges and the accuracy repeats the same count for many
evals), overfit (40 noisy samples, a big model, many epochs: the validation loss turns up while the
train loss goes to zero), frozen (a learning rate of 0: nothing is learned), collapse (95% of one
class and a model that only learns the prior: every prediction is the majority class, the accuracy
sits at its share), too_high (Adam at a learning rate of 1.0: the first steps throw the model out
and it never learns), stale_eval (torch only: the loop evaluates a copy of the untrained model, a
forgotten weight load: training improves, every eval is the same), blow_up (torch only: Adam
at 50, the loss logged at step 0 and then a million), resumed (Lightning only:
stopped after 4 epochs and resumed from its last checkpoint into the same logger version).
"""

from __future__ import annotations

import os
import sys

import numpy as np

framework, out = sys.argv[1], sys.argv[2]


def make_data(mode: str) -> None:
    """The data set and settings of one mode, as module globals the trainers read."""
    global xt, yt, xv, yv, epochs, hidden, lr, n_train, root, stale_eval, resumed
    rng = np.random.default_rng(0)
    n_train = 40 if mode == "overfit" else 1000
    x = rng.normal(size=(n_train + 400, 8)).astype("float32")
    y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=len(x))) > 0).astype("int64")
    if mode == "overfit":  # noisy labels in the few training samples: memorised, not learned
        flip = rng.random(n_train) < 0.3
        y[:n_train][flip] = 1 - y[:n_train][flip]
    if mode == "collapse":  # the label ignores the inputs: 95% class 0
        y = (rng.random(len(x)) < 0.05).astype("int64")
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    epochs = {"overfit": 80, "long": 40, "too_high": 20, "resumed": 20}.get(mode, 10)
    hidden = 256 if mode == "overfit" else 16
    lr = {"overfit": 1e-2, "frozen": 0.0, "long": 1e-3, "too_high": 1.0, "blow_up": 50.0}.get(
        mode, 3e-3
    )
    stale_eval, resumed = mode == "stale_eval", mode == "resumed"
    root = os.path.join(out, mode)


def torch_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
    )


def run_lightning() -> None:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from torch import nn

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_model()

        def training_step(self, batch, i):
            xb, yb = batch
            loss = nn.functional.cross_entropy(self.net(xb), yb)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, i):
            xb, yb = batch
            logits = self.net(xb)
            self.log("val_loss", nn.functional.cross_entropy(logits, yb))
            self.log("val_acc", (logits.argmax(1) == yb).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    pl.seed_everything(0)
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(xt), torch.tensor(yt)),
        batch_size=32,
        shuffle=True,
    )
    val = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(xv), torch.tensor(yv)), batch_size=128
    )
    if not resumed:
        loggers = [CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tb")]
        trainer = pl.Trainer(
            max_epochs=epochs,
            logger=loggers,
            accelerator="cpu",
            log_every_n_steps=5,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(Model(), train, val)
        return
    # stopped after 4 epochs, resumed from the last checkpoint into the same logger version (as
    # users do to keep one run): Lightning's CSVLogger rewrites metrics.csv from the resume step
    ckpt = os.path.join(root, "ckpt")
    for max_epochs, resume in ((4, None), (epochs, os.path.join(ckpt, "last.ckpt"))):
        loggers = [
            CSVLogger(root, name="csv", version=0),
            TensorBoardLogger(root, name="tb", version=0),
        ]
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            logger=loggers,
            accelerator="cpu",
            log_every_n_steps=5,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[pl.callbacks.ModelCheckpoint(dirpath=ckpt, save_last=True)],
        )
        trainer.fit(Model(), train, val, ckpt_path=resume)


def run_keras() -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    os.makedirs(root, exist_ok=True)
    model.fit(
        xt,
        yt,
        validation_data=(xv, yv),
        epochs=epochs,
        batch_size=32,
        verbose=0,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(root, "training_log.csv"))],
    )


def run_torch() -> None:
    import torch
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    model = torch_model()
    evaluated = torch_model() if stale_eval else model  # same seed: the untrained weights
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    writer = SummaryWriter(os.path.join(root, "runs", "exp"))
    xt_, yt_, xv_, yv_ = map(torch.tensor, (xt, yt, xv, yv))
    step = 0
    for _epoch in range(epochs):
        perm = torch.randperm(len(xt_))
        for b in range(0, len(xt_), 32):
            idx = perm[b : b + 32]
            loss = nn.functional.cross_entropy(model(xt_[idx]), yt_[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 10 == 0:
                writer.add_scalar("Loss/train", loss.item(), step)
            step += 1
        with torch.no_grad():
            logits = evaluated(xv_)
            writer.add_scalar("Loss/test", nn.functional.cross_entropy(logits, yv_).item(), step)
            writer.add_scalar(
                "Accuracy/test", (logits.argmax(1) == yv_).float().mean().item(), step
            )
    writer.close()


def run_hf() -> None:
    import torch
    from torch import nn
    from transformers import Trainer, TrainingArguments

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_model()

        def forward(self, x, labels=None):
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = nn.functional.cross_entropy(logits, labels)
            return out

    class Data(torch.utils.data.Dataset):
        def __init__(self, a, b):
            self.a, self.b = torch.tensor(a), torch.tensor(b)

        def __len__(self):
            return len(self.a)

        def __getitem__(self, i):
            return {"x": self.a[i], "labels": self.b[i]}

    def accuracy(p):
        return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

    args = TrainingArguments(
        output_dir=root,
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        learning_rate=lr,
        eval_strategy="epoch",
        logging_steps=10,
        save_strategy="epoch",
        save_total_limit=2,
        report_to=["tensorboard"],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        warmup_steps=max(1, epochs * -(-n_train // 32) // 20),
    )
    trainer = Trainer(
        model=Net(),
        args=args,
        train_dataset=Data(xt, yt),
        eval_dataset=Data(xv, yv),
        compute_metrics=accuracy,
    )
    trainer.train()


for mode in sys.argv[3:]:
    make_data(mode)
    {"lightning": run_lightning, "keras": run_keras, "torch": run_torch, "hf": run_hf}[framework]()
