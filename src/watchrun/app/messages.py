"""Messages between the engine worker, the app and the panes (small and replaceable)."""

from __future__ import annotations

from textual.message import Message

from watchrun.model import Alert
from watchrun.snapshot import Snapshot


class SnapshotReady(Message):
    """The engine published a new snapshot; a newer one replaces a queued one."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


class NewAlerts(Message):
    """Alerts raised by the last tick (toasts, bell, hook)."""

    def __init__(self, alerts: list[Alert]) -> None:
        super().__init__()
        self.alerts = alerts


class RunChosen(Message):
    """The user moved to a run (run list, overview tile)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class AlertChosen(Message):
    """Enter on an alert: open its detail."""

    def __init__(self, alert: Alert) -> None:
        super().__init__()
        self.alert = alert
