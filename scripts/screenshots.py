"""Regenerate the README's pictures: the main screen and the overview of the demo runs, saved as
SVG by Textual itself (App.save_screenshot). Usage: python scripts/screenshots.py [OUT_DIR]"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from watchrun.app.app import WatchrunApp
from watchrun.config import Config
from watchrun.demo import write_all

FIXED = 1_700_000_000.0  # file times and clock fixed: the pictures change only when the UI does


async def shoot(root: str, out: Path, keys: list[str], name: str, size: tuple[int, int]) -> None:
    app = WatchrunApp([root], Config(), quiet=True)
    app.clock = lambda: FIXED + 600
    async with app.run_test(size=size) as pilot:
        while not (app.ready and app.main.selected is not None):
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.3)
        app.save_screenshot(filename=name, path=str(out))
    print(out / name)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="watchrun-shots-") as root:
        write_all(root)
        for dirpath, _, files in os.walk(root):
            for f in files:
                os.utime(os.path.join(dirpath, f), (FIXED, FIXED))
        asyncio.run(shoot(root, out, [], "main-screen.svg", (140, 40)))
        asyncio.run(shoot(root, out, ["o"], "overview.svg", (140, 40)))


if __name__ == "__main__":
    main()
