"""A hand-written PyTorch loop with watchrun's RunLogger. Usage: python train_torch.py DIR STEPS"""

import sys

import torch
from torch import nn

from watchrun.integrations import RunLogger
from watchrun.metrics import classification

run_dir, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
x = torch.randn(400, 4)
y = (x[:, 1] > 0).long()
net = nn.Linear(4, 2)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
log = RunLogger(run_dir, max_steps=steps, checkpoint_dir=run_dir)
for step in range(1, steps + 1):
    idx = torch.randint(0, 400, (32,))
    loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    log.log(step, {"train_loss": loss.item()})
    if step % 20 == 0:
        with torch.no_grad():
            logits = net(x)
            log.log(
                step,
                {
                    "val_loss": nn.functional.cross_entropy(logits, y).item(),
                    **classification(logits, y, prefix="val_"),
                },
            )
    if log.stop_requested():
        torch.save(net.state_dict(), f"{run_dir}/stop-step-{step}.pt")
        log.stopped(step, f"{run_dir}/stop-step-{step}.pt")
        break
