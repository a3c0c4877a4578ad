"""The pictures a team puts in a paper (issue 21): what ``--plot`` draws, read back from the figure's
artists (lines, patches, collections, texts) of the real commands. Each test fails on the pictures as
they were before (a colour bar, no marks, "score" on every y axis, paths in the subtitle, bins across
the cut-off, every audit point red)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import invoke, make_rows, reorder, to_lines, write_jsonl

N = 300


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Every matplotlib Figure the command saves, in order (the file is still written)."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def capture(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return figures


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "in" / "a.jsonl", to_lines(make_rows(N, seed=3)))


def preview(config_file, data, tmp_path, *extra):
    result = invoke("preview", config_file, "-i", data, "-q", "--plot", tmp_path / "p.png", *extra)
    assert result.exit_code == 0, result.output
    return result


def panels(fig) -> list:
    """The panels of a figure: its axes, without a colour bar's."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def vertical_lines(ax) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.get_lines()
            if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]


def shaded_spans(ax) -> list[tuple[float, float]]:
    return [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]


def texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


# ------------------------------------------------------------------ score by position


def test_str_and_saw_panels_mark_their_section_splits_and_transition_regions(tmp_path, config_file, data, drawn):
    """ORDERINGS.md on n=300: STR S=2, r=0.225: split 150, R=round(67.5)=68, region [82, 218); SAW S=3,
    r=0.075: splits 100 and 200, R=round(22.5)=22, regions [78, 122) and [178, 222). Sorting: none."""
    preview(config_file, data, tmp_path, "--compare", "str,saw,sorting")
    str_ax, saw_ax, sorting_ax = panels(drawn[0])
    assert vertical_lines(str_ax) == [150] and shaded_spans(str_ax) == [(82, 218)]
    assert vertical_lines(saw_ax) == [100, 200] and shaded_spans(saw_ax) == [(78, 122), (178, 222)]
    assert vertical_lines(sorting_ax) == [] and shaded_spans(sorting_ax) == []
    assert [t.get_text() for t in str_ax.get_legend().get_texts()] == [
        "binned mean", "transition region", "section split"]


def test_marks_follow_the_valid_rows_after_invalid_rows_placed_first():
    """invalid_scores: first puts the NaN rows before the order; the method ordered only the valid ones."""
    from reorder_cli.inspect import plot

    params = {"num_sections": 3, "folding_ratio": 0.075, "folding_layer": 2}
    scores = np.r_[np.full(7, np.nan), np.arange(N, dtype=np.float64)]
    assert plot.marks("saw", params, scores) == ([107, 207], [(85, 129), (185, 229)])
    assert plot.marks("saw", params, scores[::-1]) == ([100, 200], [(78, 122), (178, 222)])  # placed last
    assert plot.marks("sorting", params, scores) == ([], [])


def test_the_y_axis_names_the_score_field_or_expression(tmp_path, config_file, data, drawn):
    preview(config_file, data, tmp_path, "--method", "sorting", "--set", "score_field=int_score")
    preview(config_file, data, tmp_path, "--method", "sorting", "--set", "score=0.5 * score + token_count")
    assert [panels(fig)[0].get_ylabel() for fig in drawn] == ["int_score", "0.5 * score + token_count"]


def test_no_colour_bar_the_colour_encodes_nothing(tmp_path, config_file, data, drawn):
    preview(config_file, data, tmp_path, "--compare", "str,shuffle")
    fig = drawn[0]
    assert len(fig.axes) == 2  # the two panels, no colour bar's axes
    for ax in fig.axes:
        (points,) = ax.collections
        assert points.get_array() is None and len(np.unique(points.get_facecolors(), axis=0)) == 1


def test_titles_say_which_rows_a_selection_kept_of_how_many(tmp_path, config_file, data, drawn):
    preview(config_file, data, tmp_path, "--method", "saw", "--set", "select.method=top-k", "--set", "select.k=40")
    assert panels(drawn[0])[0].get_title(loc="left") == "SAW (S=3, L=2, r=0.075) · kept 40 of 300 rows (top-k)"
    assert len(panels(drawn[0])[0].collections[0].get_offsets()) == 40
    out = tmp_path / "out"
    reorder(config_file, data, out, "str", sets=["select.method=top-r", "select.r=0.5"])
    assert invoke("stats", out, "--plot", tmp_path / "s.png").exit_code == 0
    assert panels(drawn[-1])[0].get_title(loc="left") == "STR (S=2, L=3, r=0.225) · kept 150 of 300 rows (top-r)"


def _plot_command(command: str, tmp_path, config_file, data) -> list:
    picture = tmp_path / "pic.png"
    if command == "preview":
        return ["preview", config_file, "-i", data, "--method", "str", "-q", "--plot", picture]
    out = tmp_path / "out"
    reorder(config_file, data, out, "str")
    if command == "stats":
        return ["stats", out, "--plot", picture]
    (tmp_path / "log.jsonl").write_text("".join(f'{{"step": {s}, "ids": {list(range(s * 30, s * 30 + 30))}}}\n'
                                                for s in range(10)))
    return ["audit", out, tmp_path / "log.jsonl", "--positions", "--plot", picture]


@pytest.mark.parametrize("command", ["preview", "stats", "audit"])
def test_no_local_path_in_any_text_of_the_picture(tmp_path, config_file, data, drawn, command):
    result = invoke(*_plot_command(command, tmp_path, config_file, data))
    assert result.exit_code == 0, result.output
    (fig,) = drawn
    words = texts(fig)
    assert words and not [t for t in words if tmp_path.name in t or "/" in t or "a.jsonl" in t], words


@pytest.mark.parametrize("command", ["preview", "stats", "audit"])
def test_title_sets_the_heading(tmp_path, config_file, data, drawn, command):
    result = invoke(*_plot_command(command, tmp_path, config_file, data), "--title", "Run 7 · STR on FineWeb")
    assert result.exit_code == 0, result.output
    assert drawn[0].get_suptitle() == "Run 7 · STR on FineWeb"


# ------------------------------------------------------------------ the selection picture


def test_selection_bins_have_the_cut_off_on_an_edge(tmp_path, config_file, data, drawn):
    result = preview(config_file, data, tmp_path, "--compare", "saw,sorting", "--set", "select.method=top-k",
                     "--set", "select.k=100", "--json")
    import json

    cutoff = json.loads(result.stdout)["data"]["orders"][0]["selection"]["cutoff"]
    assert not math.isclose(cutoff * 80 / 3 % 1, 0, abs_tol=1e-9)  # not an edge of 80 bins on [0, 3] by chance
    selection = drawn[1]
    for ax in panels(selection):
        assert vertical_lines(ax) == [cutoff]
        bars = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if p.get_height() > 0]
        assert bars and all(b <= cutoff + 1e-9 or a >= cutoff - 1e-9 for a, b in bars), cutoff
        assert any(math.isclose(a, cutoff, abs_tol=1e-9) for a, _ in bars)
    assert panels(selection)[-1].get_xlabel() == "score"


# ------------------------------------------------------------------ the audit picture

G = 20


def _audit(tmp_path, config_file, data, steps) -> object:
    out = tmp_path / "out"
    if not out.exists():
        reorder(config_file, data, out, "str")
    log = tmp_path / "log.jsonl"
    log.write_text("".join(f'{{"step": {s}, "ids": {ids}}}\n' for s, ids in enumerate(steps)))
    return invoke("audit", out, log, "--positions", "--plot", tmp_path / "audit.png")


def _by_label(ax) -> dict:
    return {artist.get_label(): artist for artist in [*ax.collections, *ax.get_lines()]}


def test_audit_picture_draws_the_diagonal_the_windows_and_only_the_broken_steps_red(tmp_path, config_file, data,
                                                                                    drawn):
    steps = [list(range(s * G, s * G + G))[::-1] for s in range(N // G)]  # the order inside a window is free
    assert _audit(tmp_path, config_file, data, steps).exit_code == 0
    whole = _by_label(drawn[0].axes[0])
    ideal = whole["ideal: consumed in order"]
    assert list(ideal.get_xdata()) == [0, N] and list(ideal.get_ydata()) == [0, N]
    band = whole[f"window of each step (G={G})"].get_paths()[0]
    for s in (0, 7, 14):
        x = s * G + G / 2
        assert band.contains_point((x, s * G + G / 2)) and not band.contains_point((x, (s + 1) * G + G / 2))
    assert len(whole["sample in its window"].get_offsets()) == N
    assert "outside its window or repeated" not in whole and not any(k.startswith("broken") for k in whole)

    steps[3][0], steps[6][5] = steps[6][5], steps[3][0]  # two samples three steps apart swapped
    steps[10][2] = steps[9][2]  # one consumed twice (and one never)
    assert _audit(tmp_path, config_file, data, steps).exit_code == 1
    whole = _by_label(drawn[-1].axes[0])
    red = whole["outside its window or repeated"].get_offsets()
    assert sorted(map(tuple, np.asarray(red).tolist())) == [
        (3 * G, steps[3][0]), (6 * G + 5, steps[6][5]), (10 * G + 2, steps[9][2])]
    assert len(whole["sample in its window"].get_offsets()) == N - 3  # not every point red
    broken = whole["broken steps (3 in all)"]
    assert [(p.vertices[:, 0].min(), p.vertices[:, 0].max()) for p in broken.get_paths()] == [
        (3 * G, 4 * G), (6 * G, 7 * G), (10 * G, 11 * G)]
    close = _by_label(drawn[-1].axes[1])  # the close-up starts two steps before the first broken one
    assert drawn[-1].axes[1].get_xlim() == (1 * G, 9 * G) and len(close["outside its window or repeated"]
                                                                   .get_offsets()) == 2
