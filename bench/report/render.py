"""A report as a list of blocks, written out twice: Markdown for GitHub, one offline HTML page.

Both renderings come from the same blocks, so they cannot disagree. Inline text may use
**bold**, *italics* and `code`; everything else is escaped.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    align: str = ""  # one letter per column: l, r or c; default left for the first, right else
    id: str = ""


@dataclass
class Figure:
    file: str  # relative to the run folder, e.g. "figures/auc.png"
    alt: str
    caption: list[str]  # definition, data, seeds, interval: one line each
    data: Table | None = None
    id: str = ""


@dataclass
class Details:
    summary: str
    blocks: list = field(default_factory=list)


# ---------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    align = table.align or "l" + "r" * (len(table.header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines


def to_markdown(blocks: list) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += _md_table(block) + [""]
        elif isinstance(block, Figure):
            out += [f"![{block.alt}]({block.file})", ""]
            out += [line + "  " for line in block.caption[:-1]] + block.caption[-1:] + [""]
            if block.data is not None:
                out += ["<details><summary>Data of this figure</summary>", ""]
                out += _md_table(block.data) + ["", "</details>", ""]
        elif isinstance(block, Details):
            out += [f"<details><summary>{html.escape(block.summary)}</summary>", ""]
            out += to_markdown(block.blocks).splitlines() + ["</details>", ""]
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#1b1f24;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #d0d7de;padding:.25em .55em;vertical-align:top}
th{background:#f6f8fa}td.r{text-align:right;font-variant-numeric:tabular-nums}
td.c{text-align:center}code{background:#f6f8fa;padding:0 .25em;border-radius:3px}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}details{margin:.4em 0 1em}summary{cursor:pointer}
"""


def _inline(text: str) -> str:
    escaped = html.escape(str(text), quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    escaped = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<i>\1</i>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _html_table(table: Table) -> str:
    align = table.align or "l" + "r" * (len(table.header) - 1)
    ident = f' id="{table.id}"' if table.id else ""
    head = "".join(f"<th>{_inline(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{a}">{_inline(c)}</td>' for a, c in zip(align, row))
        + "</tr>\n" for row in table.rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def _image_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: list, title: str, base_dir: Path) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            ident = f' id="{block.anchor}"' if block.anchor else ""
            parts.append(f"<h{block.level}{ident}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items)
                         + "</ul>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        elif isinstance(block, Figure):
            ident = f' id="{block.id}"' if block.id else ""
            caption = "<br>".join(_inline(line) for line in block.caption)
            data = ""
            if block.data is not None:
                data = ("<details><summary>Data of this figure</summary>"
                        + _html_table(block.data) + "</details>")
            parts.append(f'<figure{ident}><img class="figure" alt="{html.escape(block.alt)}" '
                         f'src="{_image_data_uri(base_dir / block.file)}">'
                         f"<figcaption>{caption}</figcaption>{data}</figure>")
        elif isinstance(block, Details):
            parts.append(f"<details><summary>{_inline(block.summary)}</summary>"
                         + to_html(block.blocks, "", base_dir) + "</details>")
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    body = "\n".join(parts)
    if not title:  # a fragment inside <details>
        return body
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


REPORT_MD, REPORT_HTML = "report.md", "report.html"


def write_report(folder: Path, blocks: list, title: str) -> list[Path]:
    """`blocks` as folder/report.md and folder/report.html; their paths."""
    md_path, html_path = folder / REPORT_MD, folder / REPORT_HTML
    md_path.write_text(to_markdown(blocks))
    html_path.write_text(to_html(blocks, title, folder))
    return [md_path, html_path]
