"""The plot renderer: decimation, scale groups, ticks, and what reaches the screen."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from watchrun.app.plotting import Curve, Figure, decimate, nice_ticks, render, scale_groups


def _text(fig: Figure, width: int = 100, height: int = 16) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(render(fig, width, height))
    return console.export_text()


def test_decimate_keeps_min_and_max_of_each_column():
    x = np.arange(1_000_000, dtype=float)
    y = np.zeros_like(x)
    y[500_123] = 7.0
    y[900_000] = -3.0
    xs, ys = decimate(x, y, 100)
    assert len(xs) <= 200 and 7.0 in ys and -3.0 in ys


def test_scales_far_apart_get_their_own_axis():
    x = np.arange(10.0)
    lr = Curve("lr", x, np.full(10, 1e-4), "#ffffff")
    grad = Curve("grad_norm", x, np.linspace(1, 3, 10), "#ffffff")
    loss = Curve("loss", x, np.linspace(2, 1, 10), "#ffffff")
    assert scale_groups([grad, loss, lr]) == [0, 0, 1]
    assert scale_groups([grad, loss]) == [0, 0]


def test_nice_ticks_are_round():
    assert nice_ticks(0, 600, 5) == [0, 200, 400, 600] or nice_ticks(0, 600, 5) == [
        0,
        100,
        200,
        300,
        400,
        500,
        600,
    ]
    assert all(float(t * 4).is_integer() for t in nice_ticks(0.28, 2.3, 4))


def test_the_x_axis_ticks_and_all_lines_fit_the_height():
    x = np.arange(0, 5000, dtype=float)
    y = 2 * np.exp(-x / 1000) + 0.3
    y[3000] = np.nan
    text = _text(
        Figure(
            (Curve("loss", x, y, "#5fafff", best=(4999.0, float(y[-1]))),),
            marks=(2500.0,),
            nonfinite=(3000.0,),
        ),
        100,
        16,
    )
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 16
    assert "└" in lines[-2] and "┬" in lines[-2]  # the axis line, not cut
    assert "1k" in lines[-1] and "4k" in lines[-1]  # its numbers
    assert "★" in text and "┊" in text and "┃" in text  # best, alert step, NaN


def test_ascii_figure_is_ascii():
    x = np.arange(100.0)
    text = _text(
        Figure(
            (Curve("loss", x, 1 / (x + 1), "#5fafff", best=(99.0, 0.01)),),
            ascii_only=True,
            marks=(50.0,),
        )
    )
    assert text.isascii() and "+" in text


def test_short_names_keep_runs_apart():
    from watchrun.app.text import middle, short_names

    keys = [
        f"pl-csv-edgecases/{who}/lightning_logs/version_0"
        for who in ("Goreg12345", "DranovEgor", "DiogoFerreira7")
    ]
    keys += ["pl-mnist/lightning_logs/version_0", "pl-mnist/lightning_logs/version_1"]
    for width in (16, 24, 30):
        names = short_names(keys, width)
        assert len(set(names.values())) == len(keys), names
        assert all(len(v) <= width for v in names.values())
    assert "Goreg12345" in short_names(keys, 24)[keys[0]]
    assert middle("pl-mnist-tb/version_0", 12) == "pl-mn…sion_0"


def test_themes_come_from_toml_files_and_the_user_dir(tmp_path, monkeypatch):
    from watchrun.app.theme import load_all

    user = tmp_path / "watchrun" / "themes"
    user.mkdir(parents=True)
    (user / "mine.toml").write_text(
        'name = "mine"\nprimary = "#112233"\ndark = false\n'
        '[watchrun]\ncritical = "#aa0000"\nplot = ["#010203", "#040506"]\n'
    )
    (user / "broken.toml").write_text("name = \n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    themes, palettes, problems = load_all()
    assert {"watchrun-dark", "watchrun-light", "watchrun-contrast", "mine"} <= set(themes)
    assert palettes["mine"].critical == "#aa0000" and palettes["mine"].plot == (
        "#010203",
        "#040506",
    )
    assert palettes["watchrun-light"].critical != palettes["watchrun-dark"].critical
    assert len(problems) == 1 and "broken.toml" in problems[0]


def test_decimated_series_are_remembered_only_while_their_arrays_cannot_change():
    from watchrun.app.plotting import decimated

    x = np.arange(100_000, dtype=np.float64)
    y = np.sin(x / 500.0)
    x.flags.writeable = y.flags.writeable = False
    first = decimated(x, y, 100, False)
    assert len(first[0]) <= 200
    assert decimated(x, y, 100, False)[0] is first[0]  # the same version: not done again
    assert decimated(x, y, 80, False)[0] is not first[0]  # another width: done again
    assert decimated(x, y, 100, True)[1] is not first[1]  # log y: done again
    mutable = np.sin(x / 500.0)
    again = decimated(x, mutable, 100, False)
    mutable[:] = 5.0  # an array that can change is never served from the cache
    assert decimated(x, mutable, 100, False)[1].max() == 5.0 and again[1].max() < 1.01


def test_short_names_keep_the_experiment_and_the_run_part_whole_where_they_fit():
    from watchrun.app.text import short_names

    keys = [
        "rl-ddpg-pilot-healthy/model_static/model_SMode/model_SMode_exp2/Exp2_1/data",
        "yolo-dog-emotion-earlystop/runs/detect/train/results.csv",
        "yolo-anemia-no-boxes-collapse/runs/detect/train/results.csv",
        "console-slurm-cifar100-nan-cosine/slurm_log/slurm22348.log",
    ]
    wide = short_names(keys, 35)
    assert wide[keys[0]] == "rl-ddpg-pilot-healthy/…/Exp2_1/data"
    assert wide[keys[1]] == "yolo-dog-emotion-earlystop/…"  # results.csv tells none apart
    assert wide[keys[3]].startswith("console-") and wide[keys[3]].endswith("/slurm22348.log")
    narrow = short_names(keys, 16)
    assert narrow[keys[0]].startswith("rl-") and narrow[keys[1]].startswith("yolo-")
    for names, width in ((wide, 35), (narrow, 16)):
        assert len(set(names.values())) == len(keys)
        assert all(len(v) <= width for v in names.values())


def test_nice_ticks_give_two_labels_where_the_range_holds_two():
    assert nice_ticks(1, 85, 3) == [25, 50, 75]  # not 50 alone
    assert nice_ticks(10, 1500, 3) == [500, 1000, 1500]
    assert nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]  # no 0.6000000000000001
