"""The app's screens, one per module."""

from watchrun.app.screens.alert_detail import AlertDetailScreen
from watchrun.app.screens.compare import CompareScreen
from watchrun.app.screens.help import HelpScreen
from watchrun.app.screens.main import MainScreen
from watchrun.app.screens.overview import OverviewScreen
from watchrun.app.screens.stop import StopChoice, StopScreen

__all__ = [
    "AlertDetailScreen",
    "CompareScreen",
    "HelpScreen",
    "MainScreen",
    "OverviewScreen",
    "StopChoice",
    "StopScreen",
]
