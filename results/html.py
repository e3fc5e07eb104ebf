"""report.md -> report.html: one self-contained page (inline CSS, no scripts, no external files).

Only the Markdown the report writes is understood: ATX headings, pipe tables, "- " lists,
"> " block quotes, lines that are a single image (with the caption line under it, when one
follows), paragraphs; inline **bold**, `code`,
[links](target) and ![images](target). Everything else is HTML-escaped text, so no cell of
a plan or file can inject markup. Images stay relative links (the page opens beside its
folders) or, with `embed`, become base64 data URIs so the page alone can be mailed around.
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from pathlib import Path

from partfer import atomicio
from partfer.orchestrator.run_files import HTML_FILE
from partfer.results.markdown import CAPTION_MARK, heading_anchors

_CODE = re.compile(r"`([^`]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
_ALONE_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
blockquote { border-left: 4px solid #c33; background: #fff4f4; margin: 1em 0; padding: 0.4em 1em; }
code { background: #f3f3f3; padding: 0 0.2em; }
img { max-width: 100%; box-sizing: border-box; border: 1px solid #ddd; margin: 0.4em 0; }
"""

ImageSource = Callable[[str], str]


def _inline(text: str, image_src: ImageSource) -> str:
    """Escape, then turn the inline Markdown the report uses into tags (code spans verbatim)."""
    out = []
    for i, piece in enumerate(_CODE.split(text)):
        if i % 2:                                     # inside `code`
            out.append(f"<code>{html.escape(piece)}</code>")
            continue
        piece = html.escape(piece, quote=True)
        piece = _IMAGE.sub(lambda m: f'<img alt="{m[1]}" src="{image_src(html.unescape(m[2]))}">',
                           piece)
        piece = _LINK.sub(lambda m: f'<a href="{m[2]}">{m[1]}</a>', piece)
        piece = _BOLD.sub(r"<strong>\1</strong>", piece)
        piece = _EMPH.sub(r"<em>\1</em>", piece)
        out.append(piece)
    return "".join(out)


def _cells(line: str) -> list[str]:
    """A pipe-table row's cells; "\\|" is a literal bar inside a cell."""
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    cells = re.split(r"(?<!\\)\|", body)
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(lines: list[str], image_src: ImageSource) -> str:
    header, rows = _cells(lines[0]), [_cells(r) for r in lines[2:]]
    head = "".join(f"<th>{_inline(c, image_src)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c, image_src)}</td>" for c in row) + "</tr>\n"
                   for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _starts_block(line: str) -> bool:
    s = line.lstrip()
    return (s.startswith(("#", "|", ">", "- ")) or bool(_ALONE_IMAGE.match(s)))


def markdown_to_html(text: str, image_src: ImageSource = lambda src: html.escape(src)) -> str:
    """The body HTML of the report's Markdown (see the module docstring for the subset)."""
    lines = text.split("\n")
    # headings below the title carry the ids the report's table of contents links to
    anchors = iter([anchor for _, _, anchor in heading_anchors(text)])
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        if not stripped:
            i += 1
        elif heading := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            level = len(heading[1])
            ident = f' id="{html.escape(next(anchors), quote=True)}"' if level > 1 else ""
            out.append(f"<h{level}{ident}>{_inline(heading[2], image_src)}</h{level}>")
            i += 1
        elif stripped.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            if len(block) >= 2 and _SEPARATOR.match(block[1].replace(" ", "")):
                out.append(_table(block, image_src))
            else:
                out.append("<p>" + "<br>\n".join(_inline(b, image_src) for b in block) + "</p>")
        elif stripped.startswith(">"):
            block = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                block.append(re.sub(r"^>\s?", "", lines[i].strip()))
                i += 1
            out.append("<blockquote>\n" + markdown_to_html("\n".join(block), image_src)
                       + "\n</blockquote>")
        elif stripped.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].strip()[2:], image_src)}</li>")
                i += 1
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif image := _ALONE_IMAGE.match(stripped):
            alt = html.escape(image[1], quote=True)
            caption = html.escape(image[1])
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if following.startswith(CAPTION_MARK) and following.endswith("*"):
                caption = _inline(following[1:-1], image_src)
                i += 1
            out.append(f'<figure><img alt="{alt}" src="{image_src(image[2])}">'
                       f"<figcaption>{caption}</figcaption></figure>")
            i += 1
        else:
            block = []
            while i < len(lines) and lines[i].strip() and (not block or
                                                           not _starts_block(lines[i])):
                block.append(lines[i].strip())
                i += 1
            out.append("<p>" + "\n".join(_inline(b, image_src) for b in block) + "</p>")
    return "\n".join(out)


def _embedder(run_dir: Path) -> ImageSource:
    """Relative PNG links -> data URIs (files that do not exist stay links, and show as such)."""
    def source(src: str) -> str:
        path = Path(run_dir) / src
        if src.endswith(".png") and "://" not in src and path.is_file():
            return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        return html.escape(src, quote=True)
    return source


def render_page(markdown: str, title: str, run_dir: Path, embed: bool = False) -> str:
    """A complete HTML document of the report (images linked relatively, or embedded)."""
    image_src = _embedder(run_dir) if embed else (lambda src: html.escape(src, quote=True))
    body = markdown_to_html(markdown, image_src)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def write_html(markdown: str, title: str, run_dir: Path, embed: bool = False) -> Path:
    """report.html beside report.md, written atomically."""
    return atomicio.write_text(Path(run_dir) / HTML_FILE, render_page(markdown, title, run_dir, embed))
