"""report.html from the report's Markdown: the subset it uses, escaping, and embedded images."""
import base64

from partfer.results.html import markdown_to_html, render_page, write_html

MD = """# Run `r1`

> **SHRUNK RUN: NOT comparable.** Reasons:
>
> - image size 32

Tables: [table1.csv](tables/table1.csv), *before* and **after**.
Second line of the same paragraph with a <script>alert(1)</script> & an "quote".

| setting | value |
|---|---|
| epochs | {"a": 1} |
| pipe | a \\| b |

- first item
- second `code <b>`

![fig](figures/x.png)
"""


def test_every_block_of_the_subset():
    html = markdown_to_html(MD)
    assert "<h1>Run <code>r1</code></h1>" in html
    assert "<blockquote>\n<p><strong>SHRUNK RUN: NOT comparable.</strong> Reasons:</p>" in html
    assert "<ul>\n<li>image size 32</li>\n</ul>\n</blockquote>" in html
    assert '<a href="tables/table1.csv">table1.csv</a>' in html
    assert "<em>before</em> and <strong>after</strong>." in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; an &quot;quote&quot;" in html
    assert "<script>" not in html
    assert "<thead><tr><th>setting</th><th>value</th></tr></thead>" in html
    assert "<td>{&quot;a&quot;: 1}</td>" in html
    assert "<td>a | b</td>" in html
    assert "<li>second <code>code &lt;b&gt;</code></li>" in html
    assert '<figure><img alt="fig" src="figures/x.png"><figcaption>fig</figcaption></figure>' in html
    # The two paragraph lines stay one paragraph.
    assert html.count("<p>Tables:") == 1 and "Second line" in html.split("<p>Tables:")[1].split("</p>")[0]


def test_page_is_self_contained_and_can_embed_images(tmp_path):
    png = b"\x89PNG\r\n\x1a\nfake"
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "x.png").write_bytes(png)
    page = render_page(MD, "run <r1>", tmp_path)
    assert page.startswith("<!DOCTYPE html>") and "<title>run &lt;r1&gt;</title>" in page
    assert "<style>" in page and "<link" not in page and "<script" not in page
    assert 'src="figures/x.png"' in page
    path = write_html(MD, "r1", tmp_path, embed=True)
    embedded = path.read_text()
    assert path.name == "report.html"
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in embedded
    assert 'src="figures/x.png"' not in embedded


def test_headings_get_the_ids_the_contents_link_to_and_figures_their_captions():
    from partfer.results.markdown import figure, heading_anchors
    md = ("# Run\n\n## Table I: accuracy (%), ours\n\n### CK+ (`ckplus`)\n\n## Notes\n\n"
          "### CK+ (`ckplus`)\n\n" + figure("figures/a_curves.png", "a_curves.png",
                                            "CK+: loss beside accuracy per epoch."))
    anchors = [a for _, _, a in heading_anchors(md)]
    assert anchors == ["table-i-accuracy--ours", "ck-ckplus", "notes", "ck-ckplus-1"]
    html = markdown_to_html(md)
    assert "<h1>Run</h1>" in html
    assert '<h2 id="table-i-accuracy--ours">Table I: accuracy (%), ours</h2>' in html
    assert '<h3 id="ck-ckplus-1">CK+ (<code>ckplus</code>)</h3>' in html
    assert ('<figure><img alt="a_curves.png" src="figures/a_curves.png"><figcaption>Figure: CK+: '
            'loss beside accuracy per epoch.</figcaption></figure>') in html
    assert "<p>" not in html                              # the caption line is not a paragraph too
