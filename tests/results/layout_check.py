"""report.html as a browser lays it out: every table and figure there, none clipped, Table I on the
first screen. Checked in headless Chromium with no DevTools client: a copy of the page gets a
script that measures the laid-out page on `load` and writes its findings into the DOM, which
`--dump-dom` prints. The report itself stays script-free.

What counts as a problem: an image not loaded (naturalWidth 0) or drawn with no size; an image
wider than its container or the viewport; a table (or a cell) whose content is wider than the
box it is laid out in, or that runs past the viewport; the page scrolling sideways; fewer tables
or images on the page than report.md has.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = (1280, 900)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--allow-file-access-from-files")
_RESULT = re.compile(r'<pre id="layout-check">(.*?)</pre>', re.S)

PROBE = """
<script>
window.addEventListener("load", () => {
  const vw = document.documentElement.clientWidth, vh = window.innerHeight, problems = [];
  const right = el => el.getBoundingClientRect().right;
  for (const img of document.images) {
    const src = img.getAttribute("src").slice(0, 80), box = img.getBoundingClientRect();
    if (!img.complete || img.naturalWidth === 0) problems.push("image not loaded: " + src);
    else if (box.width < 1 || box.height < 1) problems.push("image not shown: " + src);
    if (box.width > img.parentElement.clientWidth + 0.5 || box.right > vw + 0.5)
      problems.push("image clipped: " + src + " is " + Math.round(box.width) + " px wide in " +
                    img.parentElement.clientWidth + " px");
  }
  document.querySelectorAll("table").forEach((table, i) => {
    const name = "table " + (i + 1) + " (" + table.rows[0].textContent.trim().slice(0, 40) + ")";
    const box = table.getBoundingClientRect(), holder = table.parentElement;
    if (box.width < 1 || box.height < 1) problems.push(name + " not shown");
    if (table.scrollWidth > table.clientWidth + 1 || box.right > holder.getBoundingClientRect().right + 0.5
        || holder.scrollWidth > holder.clientWidth + 1 || box.right > vw + 0.5)
      problems.push(name + " clipped: " + Math.round(box.width) + " px wide in " + holder.clientWidth + " px");
    for (const cell of table.querySelectorAll("td, th"))
      if (cell.scrollWidth > cell.clientWidth + 1) { problems.push(name + " has a clipped cell"); break; }
  });
  if (document.documentElement.scrollWidth > vw + 1) problems.push("the page scrolls sideways");
  const first = document.querySelector("table");
  const onFirstScreen = [...document.querySelectorAll("h2")]
    .filter(h => h.getBoundingClientRect().top < vh).map(h => h.textContent);
  const result = {tables: document.querySelectorAll("table").length, images: document.images.length,
                  viewport: [vw, vh], problems: problems, headings_on_first_screen: onFirstScreen,
                  first_table_top: first ? first.getBoundingClientRect().top : null};
  const out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


class ChromiumMissing(RuntimeError):
    """No headless Chromium on this machine."""


@dataclass
class Layout:
    tables: int
    images: int
    viewport: tuple[int, int]
    problems: list[str] = field(default_factory=list)
    headings_on_first_screen: list[str] = field(default_factory=list)
    first_table_top: float | None = None


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(args: list[str], viewport: tuple[int, int], timeout: float) -> str:
    binary = find_chromium()
    if binary is None:
        raise ChromiumMissing(f"none of {', '.join(CHROMIUM_NAMES)} is on PATH")
    with tempfile.TemporaryDirectory(prefix="partfer-chromium-") as profile:
        done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}",
                               f"--window-size={viewport[0]},{viewport[1]}", *args],
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def measure(page: str, base_dir: Path, viewport: tuple[int, int] = VIEWPORT, timeout: float = 120) -> Layout:
    """Lay out an HTML page (its relative links read from base_dir) and measure it."""
    base = f'<base href="{html.escape(Path(base_dir).resolve().as_uri(), quote=True)}/">'
    probe = page.replace("<head>", "<head>\n" + base, 1).replace("</body>", PROBE + "</body>", 1)
    with tempfile.TemporaryDirectory(prefix="partfer-layout-") as tmp:
        path = Path(tmp) / "probe.html"
        path.write_text(probe, encoding="utf-8")
        dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", path.as_uri()], viewport, timeout)
    found = _RESULT.search(dom)
    if found is None:
        raise RuntimeError("the page's layout probe never ran (no load event within the time budget)")
    data = json.loads(html.unescape(found[1]))
    return Layout(tables=data["tables"], images=data["images"], viewport=tuple(data["viewport"]),
                  problems=data["problems"], headings_on_first_screen=data["headings_on_first_screen"],
                  first_table_top=data["first_table_top"])


def expected_counts(markdown: str) -> tuple[int, int]:
    """(tables, images) report.md holds: what the page must show."""
    lines = markdown.splitlines()
    tables = sum(1 for line in lines if re.match(r"^\|(\s*:?-+:?\s*\|)+$", line.replace(" ", "")))
    images = len(re.findall(r"!\[[^\]]*\]\([^)\s]+\)", markdown))
    return tables, images


def check_page(page: str, markdown: str, base_dir: Path, viewport: tuple[int, int] = VIEWPORT) -> list[str]:
    """Every problem of the page laid out at `viewport`, missing tables and images included."""
    layout = measure(page, base_dir, viewport)
    tables, images = expected_counts(markdown)
    problems = list(layout.problems)
    if layout.tables < tables:
        problems.append(f"{tables - layout.tables} of report.md's {tables} tables missing from the page")
    if layout.images < images:
        problems.append(f"{images - layout.images} of report.md's {images} images missing from the page")
    return problems


def screenshot(page_path: Path, out: Path, viewport: tuple[int, int] = VIEWPORT, timeout: float = 120) -> Path:
    """A PNG of the page's first screen, as a reader first sees it."""
    out = Path(out).resolve()
    _chromium(["--virtual-time-budget=10000", f"--screenshot={out}", Path(page_path).resolve().as_uri()],
              viewport, timeout)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot at {out}")
    return out
