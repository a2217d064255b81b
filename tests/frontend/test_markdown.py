"""Model output renders faithfully: code keeps its whitespace, fenced code is highlighted, TeX is marked for KaTeX."""

from frontend.markdown import render_markdown

UNFENCED = "Here is the function:\n\ndef area(r):\n    if r < 0:\n        raise ValueError(r)\n    return 3.14 * r * r\n"
FENCED = "```python\ndef area(r):\n    return 3.14 * r * r  # <b>\n```\n"


def test_unfenced_code_keeps_its_indentation():
    html = render_markdown(UNFENCED)
    assert "<pre><code>def area(r):\n    if r &lt; 0:\n        raise ValueError(r)\n    return 3.14 * r * r\n</code></pre>" in html
    assert "<br" not in html


def test_indented_code_block_keeps_relative_indentation():
    html = render_markdown("Run it:\n\n    for i in range(3):\n        print(i)\n")
    assert "<pre><code>for i in range(3):\n    print(i)\n</code></pre>" in html


def test_prose_with_single_line_breaks_stays_prose():
    html = render_markdown("Roses are red,\nviolets are blue.")
    assert html.startswith("<p>Roses are red,<br>") and "<pre>" not in html


def test_fenced_code_is_highlighted_with_classes_not_styles():
    html = render_markdown(FENCED)
    assert html.startswith('<pre class="highlight"><code><span class="k">def</span>')
    assert '<span class="c1"># &lt;b&gt;</span>' in html
    assert "\n    <span class=\"k\">return</span>" in html
    assert "style=" not in html


def test_fenced_code_in_an_unknown_language_is_plain_and_keeps_whitespace():
    html = render_markdown("```klingon\n  a <b>\n```")
    assert html.startswith("<pre><code>  a &lt;b&gt;\n</code></pre>")


def test_all_four_tex_delimiters_are_marked_for_katex():
    html = render_markdown("Euler: $e^{i\\pi}+1=0$ and \\(a<b\\).\n\n$$\\int_0^1 x\\,dx$$\n\n\\[x^2\\]")
    assert '<span class="math-inline">e^{i\\pi}+1=0</span>' in html
    assert '<span class="math-inline">a&lt;b</span>' in html
    assert '<div class="math-display">\\int_0^1 x\\,dx</div>' in html
    assert '<div class="math-display">x^2</div>' in html


def test_dollar_amounts_are_not_math():
    html = render_markdown("It costs $5 and $10.")
    assert "math" not in html and "$5 and $10" in html


def test_math_inside_code_stays_code():
    assert render_markdown("`$x$`") == "<p><code>$x$</code></p>\n"


def test_classes_and_markers_cannot_be_forged_from_model_output():
    html = render_markdown('<span class="math-inline">x</span> <div class="k">y</div>')
    assert "<span" not in html and "<div" not in html and "&lt;span" in html


def test_documents_keep_markdown_indentation_rules():
    # Guidelines are hard-wrapped markdown: an indented continuation line is prose there.
    html = render_markdown("A rule that\n  wraps.", document=True)
    assert html == "<p>A rule that\nwraps.</p>\n"
