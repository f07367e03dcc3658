"""README.md states what the code does: its options table is the one study/options.py generates."""
from pathlib import Path

from study.options import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_options_table_is_the_declared_one():
    text = README.read_text()
    start = text.index("<!-- options table: generated -->\n") + len("<!-- options table: generated -->\n")
    end = text.index("<!-- end of the generated options table -->")
    assert text[start:end].strip() == markdown_table().strip(), \
        "README's options table differs from study/options.py's: paste the output of " \
        "python -c 'from study.options import markdown_table; print(markdown_table())'"
