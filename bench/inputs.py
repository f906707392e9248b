"""OCR and speech quality and speed: the loaders as ingest runs them, on pages and speech made here.

    .venv/bin/python bench/inputs.py                 # 8 pages at 300 and 200 dpi, 6 spoken clips (~3-5 min)
    .venv/bin/python bench/inputs.py --pages 2 --clips 1   # smoke test

OCR: prose from the sample corpus (examples/sample-corpus, CC0) is typeset on A4 pages (DejaVu Serif 11 pt when
fonts-dejavu-core is installed, else Pillow's built-in font) at 300 and 200 dpi with mild noise (0.1% salt and
pepper, a 0.5 px blur), saved as an image-only PDF and read by `loaders.load_pdf_or_scan` (pypdfium2 renders at
`ocr_dpi`, Tesseract reads in the thread pool, `ocr_workers` = cores). Character accuracy = 1 - edit distance /
reference length over the whitespace-normalised page text. Pages/s counts rendering and OCR.

Speech: plain sentences from the same corpus (no digits, no names: espeak-ng and whisper disagree on how to spell
those) are spoken by espeak-ng (`-v en -s <rate>`) in clips of a few sentences, decoded by ffmpeg and transcribed
by faster-whisper base (int8, CPU, beam 5, `speech_threads` = cores) through `speech.load_recording`. Word error
rate over lower-cased words without punctuation; real-time factor = transcription seconds / audio seconds.

On a shared machine wall-clock speed is mostly other people's load, so each speed is also given from CPU time
("idle"): pages/s = workers / CPU seconds per page (Tesseract, rendering, ffmpeg included), RTF = CPU seconds /
threads / audio seconds.

Targets (issue 17): character accuracy >= 95% on clean rendered pages, WER <= 15% on espeak-ng speech. Results:
a table on stdout, JSON in bench/results/inputs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ragworks.ingest import loaders, ocr, speech
from ragworks.ingest.base import LoadOptions, LoadReport

REPO = Path(__file__).resolve().parent.parent

CORPUS = REPO / "examples" / "sample-corpus"
DEFAULT_OUT = REPO / "bench" / "results" / "inputs.json"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
MIN_CHAR_ACCURACY = 0.95
MAX_WER = 0.15


# --- text to use ------------------------------------------------------------------------------------------------


def corpus_paragraphs() -> list[str]:
    """Prose paragraphs of the sample corpus's Markdown and text files (headings, lists, code left out)."""
    paras: list[str] = []
    for path in sorted([*CORPUS.rglob("*.md"), *CORPUS.rglob("*.txt")]):
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            block = " ".join(block.split())
            if len(block) > 200 and not block.startswith(("#", "-", "*", "|", "`", ">")) and block.isascii():
                paras.append(re.sub(r"[*_`]", "", block))
    return paras


def plain_sentences() -> list[str]:
    """Sentences of 8-25 words with no digits and no capitalised word after the first."""
    out = []
    for para in corpus_paragraphs():
        for sent in re.split(r"(?<=[.!?])\s+", para):
            words = sent.split()
            if (8 <= len(words) <= 25 and not re.search(r"\d", sent) and sent.endswith(".")
                    and not any(w[:1].isupper() for w in words[1:]) and re.fullmatch(r"[A-Za-z ,.;'-]+", sent)):
                out.append(sent)
    return out


# --- metrics ----------------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process (whisper's threads) and its finished children (Tesseract, ffmpeg)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def edit_distance(a: list[str] | str, b: list[str] | str) -> int:
    """Levenshtein distance (characters of two strings, or words of two lists)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split()


# --- OCR --------------------------------------------------------------------------------------------------------


def typeset(paragraphs: list[str], dpi: int, seed: int) -> tuple[Any, str]:
    """One A4 page of `paragraphs` at `dpi` with mild noise, and the text it shows (lines joined by spaces)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    width, height = int(8.27 * dpi), int(11.69 * dpi)
    size = round(11 * dpi / 72)
    font = ImageFont.truetype(str(FONT), size) if FONT.is_file() else ImageFont.load_default(size=size)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    margin, y, shown = int(dpi), int(dpi), []
    line_h = int(size * 1.35)
    for para in paragraphs:
        line = ""
        for word in para.split():
            trial = f"{line} {word}".strip()
            if draw.textlength(trial, font=font) > width - 2 * margin and line:
                if y + line_h > height - margin:
                    break
                draw.text((margin, y), line, font=font, fill=0)
                shown.append(line)
                y, line = y + line_h, word
            else:
                line = trial
        if line and y + line_h <= height - margin:
            draw.text((margin, y), line, font=font, fill=0)
            shown.append(line)
            y += line_h
        y += line_h // 2
        if y + 2 * line_h > height - margin:
            break
    rnd = random.Random(seed)
    px = img.load()
    for _ in range(width * height // 1000):  # 0.1% salt and pepper
        px[rnd.randrange(width), rnd.randrange(height)] = rnd.choice((0, 255))
    img = img.filter(ImageFilter.GaussianBlur(0.5))
    return img, " ".join(shown)


def bench_ocr(pages: int, dpi: int, workers: int, tmp: Path) -> dict[str, Any]:
    paras = corpus_paragraphs()
    rnd = random.Random(dpi)
    rendered, truths = [], []
    for i in range(pages):
        start = rnd.randrange(max(1, len(paras) - 6))
        img, truth = typeset(paras[start:start + 6], dpi, seed=i)
        rendered.append(img)
        truths.append(truth)
    pdf = tmp / f"scan-{dpi}.pdf"
    rendered[0].save(pdf, save_all=True, append_images=rendered[1:], resolution=dpi)
    options = LoadOptions(ocr_dpi=dpi, ocr_workers=workers)
    report = LoadReport()
    t0, c0 = time.perf_counter(), cpu_seconds()
    (doc,) = list(loaders.load_pdf_or_scan(pdf, pdf.name, options, report))
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    starts = [*doc.page_starts, len(doc.text)]
    errors = chars = 0
    for i, truth in enumerate(truths):
        got = " ".join(doc.text[starts[i]:starts[i + 1]].split())
        want = " ".join(truth.split())
        errors += edit_distance(got, want)
        chars += len(want)
    return {
        "dpi": dpi, "pages": pages, "characters": chars, "char_errors": errors,
        "char_accuracy": round(1 - errors / chars, 4), "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 3), "cpu_s_per_page": round(cpu / pages, 2),
        # what `workers` idle cores would do: the load-independent figure on a shared machine
        "pages_per_s_idle_cores": round(workers * pages / cpu, 3),
        "mean_confidence": doc.metadata["ocr_confidence"],
        "low_confidence_pages": len(report.low_confidence_pages), "font": FONT.name if FONT.is_file() else "default",
    }


# --- speech -----------------------------------------------------------------------------------------------------


def bench_speech(clips: int, per_clip: int, rate: int, threads: int, tmp: Path) -> dict[str, Any]:
    sentences = plain_sentences()
    rnd = random.Random(rate)
    rnd.shuffle(sentences)
    options = LoadOptions(speech_threads=threads, speech_language="en")
    speech.whisper_model(options)  # loaded (and assembled) before the clock starts
    errors = ref_words = 0
    audio_s = work_s = cpu_s = 0.0
    samples = []
    for c in range(clips):
        text = " ".join(sentences[c * per_clip:(c + 1) * per_clip])
        wav = tmp / f"clip-{rate}-{c}.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", str(rate), "-w", str(wav), text], check=True)
        report = LoadReport()
        t0, c0 = time.perf_counter(), cpu_seconds()
        (doc,) = list(speech.load_recording(wav, wav.name, options, report))
        work_s += time.perf_counter() - t0
        cpu_s += cpu_seconds() - c0
        audio_s += doc.metadata["audio_seconds"]
        ref, hyp = words_of(text), words_of(doc.text)
        errors += edit_distance(ref, hyp)
        ref_words += len(ref)
        if c == 0:
            samples = [text, doc.text]
    return {
        "espeak_rate_wpm": rate, "clips": clips, "audio_seconds": round(audio_s, 1), "words": ref_words,
        "word_errors": errors, "wer": round(errors / ref_words, 4), "transcribe_seconds": round(work_s, 1),
        "real_time_factor": round(work_s / audio_s, 3),
        "real_time_factor_idle_cores": round(cpu_s / threads / audio_s, 3),  # CPU time spread over `threads` cores
        "sample_reference": samples[0],
        "sample_transcript": samples[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--dpi", default="300,200")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--sentences-per-clip", type=int, default=3)
    ap.add_argument("--rates", default="130,175", help="espeak-ng speaking rates (words per minute; 175 = default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ragworks-bench-inputs-") as tmp_name:
        tmp = Path(tmp_name)
        ocr_rows = [bench_ocr(args.pages, int(d), args.threads, tmp) for d in args.dpi.split(",")]
        speech_rows = [bench_speech(args.clips, args.sentences_per_clip, int(r), args.threads, tmp)
                       for r in args.rates.split(",")]
    result = {
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "load_avg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
        "targets": {"char_accuracy": MIN_CHAR_ACCURACY, "wer": MAX_WER},
        "ocr": ocr_rows,
        "speech": speech_rows,
    }
    print(f"\nOCR (Tesseract {ocr.tesseract_version()}, image-only PDF → pypdfium2 → Tesseract, "
          f"{args.threads} workers)")
    print(f"{'dpi':>4} {'pages':>5} {'chars':>7} {'accuracy':>9} {'pages/s':>8} {'idle':>6} {'CPU s/p':>8} {'conf':>5}"
          "  target ≥ 95%")
    for r in ocr_rows:
        ok = "ok" if r["char_accuracy"] >= MIN_CHAR_ACCURACY else "MISSED"
        print(f"{r['dpi']:>4} {r['pages']:>5} {r['characters']:>7} {r['char_accuracy']:>9.2%} {r['pages_per_s']:>8.2f}"
              f" {r['pages_per_s_idle_cores']:>6.2f} {r['cpu_s_per_page']:>8.2f} {r['mean_confidence']:>5.0f}  {ok}")
    print(f"\nSpeech (espeak-ng → ffmpeg → faster-whisper base int8, beam 5, {args.threads} threads)")
    print(f"{'wpm':>4} {'clips':>5} {'audio s':>8} {'words':>6} {'WER':>7} {'RTF':>6} {'idle':>6}  target ≤ 15%")
    for r in speech_rows:
        ok = "ok" if r["wer"] <= MAX_WER else "MISSED"
        print(f"{r['espeak_rate_wpm']:>4} {r['clips']:>5} {r['audio_seconds']:>8.1f} {r['words']:>6} {r['wer']:>7.2%}"
              f" {r['real_time_factor']:>6.3f} {r['real_time_factor_idle_cores']:>6.3f}  {ok}")
    print(f"\nload average (1 min) at the end: {result['machine']['load_avg_1m']}; 'idle': CPU time spread over "
          f"{args.threads} cores, what an idle machine would do")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
