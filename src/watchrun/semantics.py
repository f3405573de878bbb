"""Metric names -> roles: split (train/val/test), kind (loss, f1, wer...), average (macro/binary),
class label for per-class families, and which direction is better.

Detectors key off these roles, never off exact names: `eval_loss`, `val_loss`, `val/loss`,
`validation/epoch_loss` are all the validation loss; `class0_f1`, `f1_class_0`, `val/f1/0` and
`eval_f1_incomplete` are members of a per-class F1 family. `[metrics]` in watchrun.toml maps
names the vocabulary misses (`"dev_objective" = "val_loss"`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

SPLITS = {
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "dev": "val",
    "vali": "val",
    "test": "test",
    "testing": "test",
    "train": "train",
    "training": "train",
    "trn": "train",
}
KINDS = {
    "loss": "loss",
    "nll": "loss",
    "xent": "loss",
    "crossentropy": "loss",
    "acc": "accuracy",
    "accuracy": "accuracy",
    "top1": "accuracy",
    "f1": "f1",
    "fscore": "f1",
    "f1score": "f1",
    "f": None,
    "precision": "precision",
    "prec": "precision",
    "recall": "recall",
    "sensitivity": "recall",
    "auc": "auc",
    "auroc": "auc",
    "rocauc": "auc",
    "wer": "wer",
    "cer": "cer",
    "rmse": "rmse",
    "mse": "mse",
    "mae": "mae",
    "r2": "r2",
    "pearson": "pearson",
    "pcc": "pearson",
    "spearman": "spearman",
    "perplexity": "perplexity",
    "ppl": "perplexity",
    "bleu": "bleu",
    "rouge": "rouge",
    "rougel": "rouge",
    "rouge1": "rouge",
    "mcc": "mcc",
    "matthews": "mcc",
    "support": "support",
    "lr": "lr",
    "reward": "reward",
    "rew": "reward",
    "return": "reward",
    "runtime": "runtime",
    "fps": "runtime",
    "flos": "runtime",
    "entropy": "entropy",
    "success": "success",
}
LOWER_BETTER = {
    "loss",
    "wer",
    "cer",
    "rmse",
    "mse",
    "mae",
    "perplexity",
    "blank_ratio",
    "top_class_share",
}
HIGHER_BETTER = {
    "accuracy",
    "f1",
    "precision",
    "recall",
    "auc",
    "r2",
    "pearson",
    "spearman",
    "bleu",
    "rouge",
    "mcc",
    "reward",
    "unique_preds",
    "pred_entropy",
    "topk_accuracy",
    "map",
    "success",
}
# components of a summed loss (detection, VAEs, auxiliary heads): the total plays "the loss"
LOSS_PARTS = {
    "cls",
    "box",
    "bbox",
    "reg",
    "obj",
    "dfl",
    "mask",
    "rpn",
    "kl",
    "recon",
    "aux",
    "iou",
    "giou",
    "seg",
    "dice",
    "ctr",
    "centerness",
    "rec",
    "reconstruction",
    "commitment",
    "vq",
}
CLASS_KINDS = {"f1", "precision", "recall", "accuracy", "support"}
AVERAGES = {
    "macro": "macro",
    "micro": "micro",
    "weighted": "weighted",
    "binary": "binary",
    "balanced": "macro",
    "avg": "",
    "mean": "",
}
NOISE = {
    "epoch",
    "step",
    "score",
    "metric",
    "metrics",
    "overall",
    "best",
    "value",
    "val",
    "mean",
    "avg",
    "total",
    "all",
    "ema",
    "smooth",
    "per",
    "class",
    "cls",
    "label",
    "on",
    "of",
    "at",
    "top",
    "running",
}
_SPLIT_RE = re.compile(r"[/._\-\s\[\]()]+")
# Ultralytics marks which head a metric belongs to: (B)ox, (M)ask, (P)ose; not a class label
_HEAD_SUFFIX = re.compile(r"\([A-Z]\)$")
# mean average precision, as detection libraries write it: mAP50, mAP_0.5, map_50, bbox/AP50
_MAP = re.compile(r"(?:^|_)(?:m_?ap|ap)(?:\d+|_|$)")
_CLASS_TOKEN = re.compile(r"^(?:class|cls|label|c)(\d+)$")


@dataclass(frozen=True)
class Role:
    name: str
    split: str = ""
    kind: str = "other"
    avg: str = ""
    cls: str | None = None

    @property
    def higher_better(self) -> bool | None:
        if self.kind in LOWER_BETTER:
            return False
        if self.kind in HIGHER_BETTER:
            return True
        return None

    @property
    def is_quality(self) -> bool:
        return self.higher_better is not None


@lru_cache(maxsize=4096)
def classify(name: str) -> Role:
    tokens = [t for t in _SPLIT_RE.split(_decamel(_HEAD_SUFFIX.sub("", name)).lower()) if t]
    split = ""
    for t in tokens:
        if t in SPLITS:
            split = SPLITS[t]
            break
    joined = "_".join(tokens)
    kind = _special_kind(joined, tokens)
    kind_index = -1
    if kind is None:
        for i, t in enumerate(tokens):
            k = KINDS.get(t)
            if k:
                kind, kind_index = k, i
                break
        if kind is None and "learning_rate" in joined:
            kind = "lr"
        if kind is None and "grad" in tokens and "norm" in tokens:
            kind = "grad_norm"
    if kind is None and joined in ("epoch", "epochs"):
        kind = "epoch"
    if kind is None and any(
        t in ("samples", "steps", "second", "seconds", "time", "secs") for t in tokens
    ):
        kind = "runtime"
    if kind is None and any(_TOP_K.match(t) for t in tokens):
        kind = "topk_accuracy"
    kind = kind or "other"
    if kind == "accuracy" and _is_top_k(tokens):
        kind = "topk_accuracy"  # top-5 accuracy: a looser headline, never a class of its own
    if not split and (
        kind == "map" or (tokens[0] == "metrics" and kind in ("precision", "recall"))
    ):
        split = "val"  # mAP is computed on held-out data only; YOLO's metrics/ are its val results
    if not split and kind in ("loss", "accuracy", "f1", "precision", "recall", "auc", "grad_norm"):
        split = "train"
    avg = ""
    cls = None
    if kind in CLASS_KINDS:
        rest = [
            t
            for i, t in enumerate(tokens)
            if i != kind_index
            and t not in SPLITS
            and not (t == "1" and i and tokens[i - 1] == "top")
        ]  # top_1_accuracy
        for t in rest:
            if t in AVERAGES:
                avg = AVERAGES[t]
        labels = [t for t in rest if t not in AVERAGES and t not in NOISE and t not in KINDS]
        for t in rest:
            m = _CLASS_TOKEN.match(t)
            if m:
                labels = [m.group(1)]
        if labels and not avg:
            cls = "_".join(labels)
    return Role(name=name, split=split, kind=kind, avg=avg, cls=cls)


_TOP_K = re.compile(r"^(?:top|acc@?|accuracy@?)([2-9]|\d{2,})$")


def token_split(name: str) -> list[str]:
    """A metric name's words (`val/cls_loss` -> val, cls, loss)."""
    return _SPLIT_RE.split(name)


def _is_top_k(tokens: list[str]) -> bool:
    if any(_TOP_K.match(t) for t in tokens):
        return True
    return "top" in tokens and any(t.isdigit() and int(t) > 1 for t in tokens)


def _special_kind(joined: str, tokens: list[str]) -> str | None:
    if "blank" in tokens and any(
        t in tokens for t in ("ratio", "rate", "frac", "fraction", "share", "pct", "prob")
    ):
        return "blank_ratio"
    if "blank" in tokens and len(tokens) <= 3:
        return "blank_ratio"
    if any(t in tokens for t in ("unique", "distinct", "n")) and any(
        t.startswith("pred") or t == "classes" for t in tokens
    ):
        return "unique_preds"
    if ("top" in tokens or "majority" in tokens or "most" in tokens) and any(
        t in tokens for t in ("share", "frac", "fraction", "ratio", "freq", "frequency", "common")
    ):
        return "top_class_share"
    if "entropy" in tokens and any(t.startswith("pred") for t in tokens):
        return "pred_entropy"
    if "grad" in joined and "norm" in joined:
        return "grad_norm"
    if _MAP.search(joined) and "loss" not in tokens:
        return "map"
    if (
        joined.startswith(("ep_rew", "episode_reward", "rollout_ep_rew"))
        or "ep_rew_mean" in joined
        or "episode_reward" in joined
    ):
        return "reward"
    return None


def _decamel(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name)


def role_of(name: str, aliases: dict[str, str] | None = None) -> Role:
    if aliases and name in aliases:
        base = classify(aliases[name])
        return Role(name=name, split=base.split, kind=base.kind, avg=base.avg, cls=base.cls)
    return classify(name)


def pick(
    names: list[str],
    split: str,
    kind: str,
    aliases: dict[str, str] | None = None,
    roles: dict[str, Role] | None = None,
) -> str | None:
    """The one series that best plays a role: plain names first, then per-step, then per-epoch.
    `roles` overrides what the names say (a run's test metrics standing in for validation)."""
    matches = []
    for n in names:
        r = roles[n] if roles and n in roles else role_of(n, aliases)
        if r.split == split and r.kind == kind and r.cls is None and r.avg in ("", "binary"):
            matches.append(n)
    if not matches:
        return None

    def rank(n: str) -> tuple[int, int, int, str]:
        low = n.lower()
        penalty = 2 if low.endswith("epoch") else 1 if low.endswith("step") else 0
        if aliases and n in aliases:
            penalty = -1
        tokens = set(_SPLIT_RE.split(low))
        part = int(bool(tokens & LOSS_PARTS) and "total" not in tokens)  # detectron2's loss_cls
        return (part, penalty, len(n), n)

    return min(matches, key=rank)


def promote_test_to_val(roles: dict[str, Role]) -> bool:
    """A run that logs no validation metric but does log test metrics (the PyTorch tutorials'
    `Loss/test`, a hand loop's `test_acc` every epoch) evaluates on its "test" set during
    training: those metrics play the validation role. Rewrites `roles` in place."""
    if any(r.split == "val" for r in roles.values()):
        return False
    tests = [n for n, r in roles.items() if r.split == "test"]
    for n in tests:
        r = roles[n]
        roles[n] = Role(name=r.name, split="val", kind=r.kind, avg=r.avg, cls=r.cls)
    return bool(tests)


def is_rl(names: list[str]) -> bool:
    return any(classify(n).kind == "reward" for n in names)
