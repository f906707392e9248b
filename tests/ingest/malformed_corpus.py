"""A seeded corpus of malformed and awkward files, the kind a team's shared folder accumulates.

`write_malformed_corpus(root, seed)` writes a few hundred small files — truncated and corrupt PDFs and DOCX, binary
junk under text names, empty files, huge lines, mixed and legacy encodings, bit-flipped UTF-8, HTML nested
thousands deep, broken JSON, dangling and looping symbolic links, FIFOs, directories named like files — plus a
few good files, one holding a canary fact. It returns what it wrote, so a test can check that every entry was
either ingested or reported with a reason.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CANARY_FILE = "canary.md"
CANARY_QUESTION = "What is the Stroma beacon's watchword?"
CANARY_FACT = "The Stroma beacon's watchword is HALCYON-SEVEN."

_WORDS = ("tide lamp keeper lens tower beacon harbour gale fog signal rock reef chart bell light buoy vessel "
          "channel pilot shore current lantern watch log").split()
_UTF8_EXTRAS = ["—", "“", "”", "é", "ü", "…", "’", "→", "°", "ñ"]


@dataclass(slots=True)
class Corpus:
    root: Path
    entries: dict[str, str] = field(default_factory=dict)  # relative path → category of what was written there
    specials: dict[str, str] = field(default_factory=dict)  # path → the failure reason it must get

    def add(self, rel: str, category: str) -> Path:
        self.entries[rel] = category
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _sentence(rng: random.Random, extras: bool = False) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 12))]
    if extras:
        words.insert(rng.randrange(len(words)), rng.choice(_UTF8_EXTRAS))
    return " ".join(words).capitalize() + "."


def _markdown(rng: random.Random, extras: bool = True) -> str:
    title = " ".join(rng.choice(_WORDS) for _ in range(3)).title()
    paras = "\n\n".join(" ".join(_sentence(rng, extras) for _ in range(3)) for _ in range(2))
    return f"# {title}\n\n{paras}\n"


def _pdf_bytes(rng: random.Random) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(w=0, h=6, text=" ".join(_sentence(rng) for _ in range(4)))
    return bytes(pdf.output())


def _docx_bytes(rng: random.Random) -> bytes:
    import docx

    d = docx.Document()
    d.add_heading(" ".join(rng.choice(_WORDS) for _ in range(3)).title(), level=1)
    d.add_paragraph(" ".join(_sentence(rng) for _ in range(3)))
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _flip_bytes(data: bytes, rng: random.Random, flips: int) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def write_malformed_corpus(root: Path, seed: int = 17) -> Corpus:
    """Write the corpus under `root` (created); every file is small, so ingesting it all embeds little."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    c = Corpus(root)
    c.add(CANARY_FILE, "good").write_text(f"# Stroma\n\n{CANARY_FACT} It is changed every spring.\n")
    for i in range(8):
        c.add(f"good/note-{i}.md", "good").write_text(_markdown(rng))
    pdf, docx = _pdf_bytes(rng), _docx_bytes(rng)
    c.add("good/report.pdf", "good").write_bytes(pdf)
    c.add("good/memo.docx", "good").write_bytes(docx)

    for i in range(30):  # truncated anywhere, from the header to just before the trailer
        c.add(f"pdf/truncated-{i}.pdf", "truncated pdf").write_bytes(pdf[: rng.randint(1, len(pdf) - 1)])
    for i in range(15):
        c.add(f"pdf/flipped-{i}.pdf", "corrupt pdf").write_bytes(_flip_bytes(pdf, rng, rng.randint(5, 60)))
    for i in range(5):
        c.add(f"pdf/junk-{i}.pdf", "junk pdf").write_bytes(b"%PDF-1.4\n" + rng.randbytes(rng.randint(10, 3000)))
    for i in range(15):
        c.add(f"docx/truncated-{i}.docx", "truncated docx").write_bytes(docx[: rng.randint(1, len(docx) - 1)])
    for i in range(10):
        c.add(f"docx/flipped-{i}.docx", "corrupt docx").write_bytes(_flip_bytes(docx, rng, rng.randint(3, 40)))
    for i in range(3):
        with zipfile.ZipFile(c.add(f"docx/not-word-{i}.docx", "zip, not docx"), "w") as z:
            z.writestr("word/document.xml", "<w:document><unclosed" if i else "nothing here")

    for i, ext in enumerate([".txt", ".md", ".html", ".json", ".jsonl", ".pdf", ".docx"] * 4):
        c.add(f"junk/binary-{i}{ext}", "binary junk").write_bytes(rng.randbytes(rng.randint(1, 4000)))
    for ext in (".txt", ".md", ".html", ".htm", ".json", ".jsonl", ".pdf", ".docx", ".markdown", ".xhtml"):
        c.add(f"empty/empty{ext}", "empty").write_bytes(b"")
    for i in range(3):
        c.add(f"empty/blank-{i}.md", "blank").write_text(" \n\t\n" * rng.randint(1, 50))

    for i in range(3):  # one giant 20 kB word; ~7 kB of words on one line
        c.add(f"lines/giant-word-{i}.txt", "huge line").write_text("x" * 20_000 + "\n")
        c.add(f"lines/long-line-{i}.md", "huge line").write_text(" ".join(rng.choice(_WORDS) for _ in range(1000)))

    for i in range(15):  # one file, two encodings
        text = _markdown(rng)
        half = len(text) // 2
        c.add(f"enc/mixed-{i}.md", "mixed encodings").write_bytes(
            text[:half].encode("utf-8") + text[half:].encode("cp1252", errors="replace"))
    for i, enc in enumerate(["cp1252", "latin-1", "cp1251", "cp1254", "mac_roman"] * 2):
        sample = "Le café était fermé; la crème brûlée à côté du théâtre. " if enc != "cp1251" else \
                 "Маяк светит над морем, и смотритель записывает погоду. "
        c.add(f"enc/legacy-{i}.txt", "legacy encoding").write_bytes((sample * 3).encode(enc, errors="replace"))
    for i in range(50):  # a few random bits flipped in good UTF-8 Markdown
        data = _markdown(rng).encode()
        c.add(f"flipped/note-{i}.md", "bit-flipped utf-8").write_bytes(_flip_bytes(data, rng, rng.randint(1, 4)))
    for i in range(3):
        text = _markdown(rng)
        at = rng.randrange(len(text))
        c.add(f"enc/nul-{i}.md", "stray NUL").write_bytes(text[:at].encode() + b"\x00" + text[at:].encode())
    for i in range(3):
        c.add(f"enc/utf16-nobom-{i}.txt", "utf-16 without BOM").write_bytes(_markdown(rng).encode("utf-16-le"))
    c.add("enc/utf16-odd.txt", "broken utf-16").write_bytes(b"\xff\xfe" + "odd".encode("utf-16-le") + b"\x00\xd8")

    for i in range(3):
        c.add(f"html/deep-{i}.html", "deeply nested html").write_text(
            "<html><body>" + "<div>" * (2000 + i * 500) + _sentence(rng) + "</body></html>")
    for i in range(10):
        tags = "".join(rng.choice(["<p>", "<table><tr><td>", "<li>", "</div>", "<h2>", "<span>", "<!--", "<"])
                       + _sentence(rng) for _ in range(8))
        c.add(f"html/tag-soup-{i}.html", "tag soup").write_text(tags)
    c.add("html/deep-table.html", "nested tables").write_text(
        "<table><tr><td>" * 800 + "cell" + "</td></tr></table>" * 10)

    c.add("json/deep.json", "deeply nested json").write_text("[" * 100_000 + "]" * 100_000)
    for i in range(5):
        c.add(f"json/broken-{i}.json", "broken json").write_text('{"text": "' + _sentence(rng)[: rng.randint(0, 30)])
    for i in range(5):
        lines = [json.dumps({"_id": f"r{j}", "text": _sentence(rng)}) for j in range(4)]
        lines.insert(rng.randrange(4), '{"_id": "bad", "text": ')
        c.add(f"json/partly-bad-{i}.jsonl", "jsonl with a bad line").write_text("\n".join(lines) + "\n")
    for i in range(3):
        gz = gzip.compress(b"".join(json.dumps({"_id": str(j), "text": _sentence(rng)}).encode() + b"\n"
                                    for j in range(20)))
        c.add(f"json/truncated-{i}.jsonl.gz", "truncated gzip").write_bytes(gz[: len(gz) // 2])

    for i in range(5):
        c.add(f"tables/ragged-{i}.md", "ragged markdown table").write_text(
            "| a | b\n|---\n| " + " | ".join(_sentence(rng) for _ in range(rng.randint(1, 4))) + "\n|\n||\n")
    for i, name in enumerate(["data.xyz", "Makefile", "photo.heic", "archive.tar", "notes.md.bak"]):
        c.add(f"other/{name}", "unsupported").write_text(f"file {i}")

    # Entries that are not regular files.
    for i in range(3):
        link = c.add(f"links/dangling-{i}.md", "dangling link")
        link.symlink_to(root / f"nowhere-{i}.md")
        c.specials[f"links/dangling-{i}.md"] = "missing"
    loop = c.add("links/loop.md", "symlink loop")
    loop.symlink_to(loop)
    c.specials["links/loop.md"] = "unreadable"
    c.add("links/to-canary.md", "link to a good file").symlink_to(root / CANARY_FILE)
    for i in range(2):
        os.mkfifo(c.add(f"special/pipe-{i}.md", "fifo"))
        c.specials[f"special/pipe-{i}.md"] = "not-a-file"
    for name in ("notes.md", "report.pdf"):  # a directory named like a file, holding a good file
        c.add(f"dirs/{name}/inside.md", "good").write_text(_markdown(rng))
    for i in range(2):  # unreadable, except to root (who reads it and ingests it)
        path = c.add(f"perm/locked-{i}.md", "chmod 000")
        path.write_text(_markdown(rng))
        path.chmod(0)
    return c
