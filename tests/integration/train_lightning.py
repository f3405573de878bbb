"""A tiny real Lightning run on the CPU. Usage: python train_lightning.py ROOT MAX_EPOCHS MODE
MODE: collapse (the model is pushed onto one class) or long (many epochs, for the stop test)."""

import sys

import lightning.pytorch as pl
import torch
from torch import nn

from watchrun.integrations.lightning import WatchrunCallback

root, max_epochs, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pl.seed_everything(0)
x = torch.randn(512, 8)
y = (x[:, 0] > 0).long()
ds = torch.utils.data.TensorDataset(x, y)


class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 2)
        if (
            mode == "collapse"
        ):  # a huge bias on class 0 and no learning: every prediction is class 0
            with torch.no_grad():
                self.net.bias.copy_(torch.tensor([50.0, -50.0]))

    def training_step(self, batch, i):
        xb, yb = batch
        loss = nn.functional.cross_entropy(self.net(xb), yb)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, i):
        xb, yb = batch
        logits = self.net(xb)
        self.log("val_loss", nn.functional.cross_entropy(logits, yb))
        return {"preds": logits, "labels": yb}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0 if mode == "collapse" else 0.05)


trainer = pl.Trainer(
    max_epochs=max_epochs,
    default_root_dir=root,
    accelerator="cpu",
    log_every_n_steps=5,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[WatchrunCallback(["neg", "pos"])],
)
trainer.fit(
    Model(),
    torch.utils.data.DataLoader(ds, batch_size=32),
    torch.utils.data.DataLoader(ds, batch_size=128),
)
