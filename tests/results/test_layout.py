"""report.html in a real headless Chromium: every table and figure shown, none clipped, Table I on
the first screen; and the check itself fails on a page broken on purpose."""
import re

import numpy as np
import pytest
from PIL import Image

from tests.results import layout_check
from partfer.results.report import build_report
from skips import needs_chromium

pytestmark = [needs_chromium, pytest.mark.slow]       # a real browser on the whole report


@pytest.fixture(scope="module")
def page(shrunk_run):
    markdown = build_report(shrunk_run).read_text()
    return (shrunk_run / "report.html").read_text(), markdown, shrunk_run


def test_every_table_and_figure_is_shown_unclipped_and_table1_is_on_the_first_screen(page):
    html, markdown, run = page
    layout = layout_check.measure(html, run)
    tables, images = layout_check.expected_counts(markdown)
    assert (layout.tables, layout.images) == (tables, images) and tables > 12 and images > 10
    assert layout.problems == []
    assert layout.headings_on_first_screen == ["Table I: accuracy (%), ours beside the paper's"]
    assert layout.first_table_top is not None and layout.first_table_top < layout.viewport[1]


def test_screenshot_of_the_first_screen(page, tmp_path):
    _, _, run = page
    shot = layout_check.screenshot(run / "report.html", tmp_path / "first_screen.png")
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (layout_check.VIEWPORT[1], layout_check.VIEWPORT[0])
    # the banner's tint, text and table rules: far from one flat colour
    assert len(np.unique(pixels)) > 50 and (pixels < 128).mean() > 0.01


def _first_img_src(html: str) -> str:
    return re.search(r'<img alt="[^"]*" src="([^"]+)"', html)[1]


BREAKS = {
    "an image whose file is gone": (lambda h: h.replace(f'src="{_first_img_src(h)}"', 'src="figures/gone.png"', 1),
                                    "image not loaded: figures/gone.png"),
    "a table left out": (lambda h: re.sub(r"<table>.*?</table>", "", h, count=1, flags=re.S),
                         "1 of report.md's"),
    "a figure wider than the page": (lambda h: h.replace("<img ", '<img style="max-width: none; width: 2400px" ', 1),
                                     "image clipped"),
    "a table wider than the page": (lambda h: h.replace("<td>", "<td>" + "W" * 400 + " ", 1), "clipped"),
    "a hidden table": (lambda h: h.replace("<table>", '<table style="display: none">', 1), "not shown"),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_broken_page_is_caught(page, name):
    html, markdown, run = page
    breaking, expected = BREAKS[name]
    broken = breaking(html)
    assert broken != html
    problems = layout_check.check_page(broken, markdown, run)
    assert any(expected in p for p in problems), problems
