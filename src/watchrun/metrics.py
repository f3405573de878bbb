"""Metric helpers for training scripts: the numbers the detectors need, in names they recognise.

    from watchrun.metrics import classification
    metrics = classification(preds, labels, label_names=["incomplete", "complete"])
    # {'accuracy': .., 'f1': .., 'f1_class_incomplete': .., 'recall_class_incomplete': ..,
    #  'macro_f1': .., 'weighted_f1': .., 'unique_predictions': .., 'top_class_share': .., ...}

`classification` works as (or inside) an HF `compute_metrics`: give it an `EvalPrediction` and it
takes the argmax of the logits. Uses scikit-learn (`pip install watchrun[metrics]`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _labels_and_preds(preds: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    if labels is None and hasattr(preds, "predictions"):  # transformers.EvalPrediction
        preds, labels = preds.predictions, preds.label_ids
    if isinstance(preds, tuple):
        preds = preds[0]
    p = np.asarray(_numpy(preds))
    y = np.asarray(_numpy(labels)).reshape(-1)
    if p.ndim > 1 and p.shape[-1] > 1:
        p = p.argmax(axis=-1)
    elif p.ndim > 1:  # one logit per sample: binary
        p = (p.reshape(-1) > 0).astype(np.int64)
    return p.reshape(-1), y


def _numpy(x: Any) -> Any:
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        return x.numpy()
    return x


def classification(
    preds: Any,
    labels: Any = None,
    label_names: Sequence[str] | None = None,
    prefix: str = "",
    confusion: bool = False,
) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro and weighted averages, accuracy, the headline
    F1 (binary for two classes, macro otherwise), prediction diversity and (optionally) the
    confusion matrix, computed with scikit-learn."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, y = _labels_and_preds(preds, labels)
    n_classes = (
        len(label_names) if label_names else int(max(p.max(initial=0), y.max(initial=0)) + 1)
    )
    classes = list(range(n_classes))
    names = [str(n) for n in label_names] if label_names else [str(c) for c in classes]
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    out: dict[str, Any] = {f"{prefix}accuracy": float((p == y).mean()) if len(y) else math.nan}
    for i, name in enumerate(names):
        out[f"{prefix}precision_class_{name}"] = float(prec[i])
        out[f"{prefix}recall_class_{name}"] = float(rec[i])
        out[f"{prefix}f1_class_{name}"] = float(f1[i])
        out[f"{prefix}support_class_{name}"] = int(sup[i])
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            y, p, labels=classes, average=avg, zero_division=0
        )
        out[f"{prefix}{avg}_precision"] = float(ap)
        out[f"{prefix}{avg}_recall"] = float(ar)
        out[f"{prefix}{avg}_f1"] = float(af)
    if n_classes == 2:  # what f1_score(labels, preds) reports by default: the positive class only
        out[f"{prefix}f1"] = float(f1[1])
    out.update(diversity(p, n_classes, prefix))
    if confusion:
        out[f"{prefix}confusion_matrix"] = confusion_matrix(y, p, labels=classes).tolist()
    return out


def diversity(preds: Any, n_classes: int | None = None, prefix: str = "") -> dict[str, float]:
    """Distinct predicted classes, the share of the most common one, and the entropy of the
    predicted-class distribution normalised to [0, 1] (1 = uniform over n_classes)."""
    p = np.asarray(_numpy(preds)).reshape(-1)
    if len(p) == 0:
        return {}
    _, counts = np.unique(p, return_counts=True)
    share = counts / counts.sum()
    k = max(n_classes or len(counts), 2)
    entropy = float(-(share * np.log(share)).sum() / math.log(k))
    return {
        f"{prefix}unique_predictions": float(len(counts)),
        f"{prefix}top_class_share": float(share.max()),
        f"{prefix}prediction_entropy": entropy,
    }


def ctc(
    outputs: Any,
    lengths: Any = None,
    blank: int = 0,
    decode: Callable[[list[int]], str] | None = None,
    references: Sequence[str] | None = None,
    prefix: str = "",
    samples: int = 5,
) -> dict[str, Any]:
    """Share of blank frames, WER and CER against `references`, and a few decoded samples.

    `outputs`: log-probabilities (batch, time, vocab) or argmax ids (batch, time);
    `lengths`: valid frames per item; `decode`: ids -> text (after CTC collapsing)."""
    arr = np.asarray(_numpy(outputs))
    ids = arr.argmax(axis=-1) if arr.ndim == 3 else arr
    lens = (
        np.asarray(_numpy(lengths)).reshape(-1)
        if lengths is not None
        else np.full(len(ids), ids.shape[1])
    )
    frames = blanks = 0
    texts = []
    for row, n in zip(ids, lens, strict=False):
        row = [int(t) for t in row[: int(n)]]
        frames += len(row)
        blanks += sum(1 for t in row if t == blank)
        collapsed = [t for i, t in enumerate(row) if t != blank and (i == 0 or t != row[i - 1])]
        texts.append(decode(collapsed) if decode else " ".join(map(str, collapsed)))
    out: dict[str, Any] = {f"{prefix}blank_ratio": blanks / frames if frames else math.nan}
    if references is not None:
        out[f"{prefix}wer"] = error_rate(
            [r.split() for r in references], [t.split() for t in texts]
        )
        out[f"{prefix}cer"] = error_rate([list(r) for r in references], [list(t) for t in texts])
    out[f"{prefix}samples"] = [
        {"prediction": t, **({"reference": references[i]} if references is not None else {})}
        for i, t in enumerate(texts[:samples])
    ]
    return out


def error_rate(references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]) -> float:
    """Total edit distance over total reference length (WER on words, CER on characters)."""
    edits = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        edits += _levenshtein(list(ref), list(hyp))
        total += len(ref)
    return edits / total if total else math.nan


def _levenshtein(a: list[Any], b: list[Any]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]
