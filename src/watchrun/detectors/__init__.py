"""Detectors, one module per failure family. Order matters only for display: alerts from the
earlier ones "claim" their metrics so that stuck_metric does not repeat them."""

from watchrun.detectors.classes import MinorityClassHidden, PredictionCollapse
from watchrun.detectors.ctc import BlankCollapse
from watchrun.detectors.evaluation import PerfectValidation, SparseEval
from watchrun.detectors.fitting import NotLearning, Overfitting, Underfitting
from watchrun.detectors.gpu import GpuMemory, GpuStarved, HostMemoryLeak
from watchrun.detectors.progress import LossAtChance, StuckMetric, TargetMiss
from watchrun.detectors.schedule import EarlyStopped, LrSchedule
from watchrun.detectors.stability import Divergence, GradSpike, NanLoss

ALL_DETECTORS = [
    NanLoss,
    Divergence,
    BlankCollapse,
    PredictionCollapse,
    PerfectValidation,
    MinorityClassHidden,
    Overfitting,
    LossAtChance,
    NotLearning,
    GradSpike,
    LrSchedule,
    TargetMiss,
    SparseEval,
    Underfitting,
    EarlyStopped,
    StuckMetric,
    GpuStarved,
    GpuMemory,
    HostMemoryLeak,
]
