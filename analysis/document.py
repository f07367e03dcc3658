# The report's document: a list of blocks (headings, paragraphs, tables, figures, sections) rendered
# twice, as HTML with the figures embedded as base64 PNG data URIs (opens from disk, loads nothing)
# and as Markdown with the figures as PNG files beside it; and the number formats its cells use.
from __future__ import annotations

import base64
import html
import math
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis import figures

@dataclass
class Doc:
    out_dir: Path
    blocks: list[tuple] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str, cls: str = "") -> None:
        self.blocks.append(("p", text, cls))

    def open(self, ident: str, cls: str = "") -> None:
        self.blocks.append(("open", ident, cls))

    def close(self) -> None:
        self.blocks.append(("close",))

    def note(self, text: str) -> None:
        self.blocks.append(("p", f"Note: {text}", "note"))

    def items(self, lines: list[str]) -> None:
        self.blocks.append(("ul", lines))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", headers, rows))

    def figure(self, name: str, fig, caption: str) -> None:
        # fig: a matplotlib Figure, or the Future of a figure's PNG bytes drawn in the worker process.
        self.figures.append(name)
        self.blocks.append(("fig", name, fig if isinstance(fig, Future) else figures.png(fig), caption))

    def finish(self) -> None:
        # Waits for the figures drawn in the worker (an error there is raised here) and writes every PNG.
        for i, b in enumerate(self.blocks):
            if b[0] == "fig":
                png = b[2].result() if isinstance(b[2], Future) else b[2]
                self.blocks[i] = ("fig", b[1], png, b[3])
                (self.out_dir / f"{b[1]}.png").write_bytes(png)

    def html(self, title: str) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;line-height:1.4}"
            "table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left}"
            "th{background:#eee}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{font-size:0.9em;color:#444}"
            ".verdict{font-size:1.05em;padding:0.5em 0.7em;border:2px solid #333;background:#f7f7f2}.note{color:#8a5a00}"
            "#summary{padding:0.1em 1em;border:1px solid #999;background:#fbfbf8}.plain{font-size:1.12em}"
            "#summary p,#summary figure,#summary table{margin:0.45em 0}h1{margin:0.3em 0}"
            ".failed{color:#a00;font-weight:bold}</style>",
            "</head><body>",
        ]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                cls = f' class="{b[2]}"' if b[2] else ""
                out.append(f"<p{cls}>{html.escape(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "open":
                cls = f' class="{b[2]}"' if b[2] else ""
                out.append(f'<section id="{b[1]}"{cls}>')
            elif b[0] == "close":
                out.append("</section>")
            elif b[0] == "fig":
                data = base64.b64encode(b[2]).decode("ascii")
                out.append(
                    f'<figure id="fig-{b[1]}"><img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(b[3])}</figcaption></figure>"
                )
        # Lets a headless browser prove that every figure decoded: it reads these attributes from the DOM.
        out.append(
            "<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
            "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}"
            "document.body.dataset.imagesTotal=im.length;document.body.dataset.imagesLoaded=ok;"
            "var s=document.getElementById('summary');if(s){document.body.dataset.summaryBottom=Math.round(s.getBoundingClientRect().bottom);}"
            "document.body.dataset.viewportHeight=window.innerHeight;});</script>"
        )
        out.append("</body></html>")
        return "\n".join(out)

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(f"**{b[1]}**" if b[2] == "verdict" else (f"> {b[1]}" if b[2] == "note" else b[1]))
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
                lines = ["| " + " | ".join(esc(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
                lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in b[2]]
                out.append("\n".join(lines))
            elif b[0] in ("open", "close"):
                continue
            elif b[0] == "fig":
                out.append(f"![{b[1]}]({b[1]}.png)\n\n*{b[3]}*")
        return "\n\n".join(out) + "\n"



# ---------------------------------------------------------------------------------------------
# Number formats: "n/a" for what is missing or not finite


def fmt_num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_p(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def fmt_pp(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.2f}"


def fmt_ci(iv, scale: float = 1.0, signed: bool = False, digits: int = 4) -> str:
    if iv is None or not math.isfinite(iv.low):
        return "n/a"
    fmt = "{:+.2f}" if signed else f"{{:.{digits}f}}"
    return "[" + fmt.format(scale * iv.low) + ", " + fmt.format(scale * iv.high) + "]"


def fmt_pair(pair: list | None) -> str:
    # an interval as study.json keeps it, [low, high] as fractions
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"[{100 * pair[0]:+.2f}, {100 * pair[1]:+.2f}]"


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return jsonable(asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])

