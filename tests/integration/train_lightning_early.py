"""A tiny real Lightning run on the CPU that early-stops: labels independent of the inputs, so
the val loss stops improving while a wide model memorises; EarlyStopping(patience 2, verbose),
ModelCheckpoint on val_loss, CSVLogger, max_epochs saved among the hparams.
Usage: python train_lightning_early.py ROOT"""

import sys

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

root = sys.argv[1]
pl.seed_everything(0)
x, y = torch.randn(256, 16), torch.randint(0, 2, (256,))
xv, yv = torch.randn(256, 16), torch.randint(0, 2, (256,))
MAX_EPOCHS = 60


class Model(pl.LightningModule):
    def __init__(self, max_epochs: int):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 2))

    def training_step(self, batch, i):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, i):
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


trainer = pl.Trainer(
    max_epochs=MAX_EPOCHS,
    default_root_dir=root,
    accelerator="cpu",
    log_every_n_steps=4,
    enable_progress_bar=False,
    enable_model_summary=False,
    logger=CSVLogger(root),
    callbacks=[
        EarlyStopping("val_loss", patience=2, verbose=True),
        ModelCheckpoint(monitor="val_loss", filename="{epoch}-{step}"),
    ],
)
trainer.fit(
    Model(MAX_EPOCHS),
    torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32),
    torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=256),
)
