"""The per-user cache of files derived from model weights, on a real (tiny) GGUF file and a tiny Llama:
a conversion is made once and reused, a damaged entry is rebuilt, concurrent first use converts once, a
full, read-only or impossible cache folder falls back to the home, and cached int8 weights give the
same numbers as calibrating again. (The built-in model through `podium serve` on a second home is in
test_local_models.py.)"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from podium.models.worker.derived import MANIFEST, DerivedCache, check
from podium.models.worker.engine import make_backend
from podium.models.worker.fastllama import FastLlama
from podium.models.worker.loader import load_causal_lm


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("podium.worker")]


def load(gguf: Path, cache: DerivedCache) -> Path:
    """Load the GGUF as the worker does; returns the converted folder it loaded from."""
    lm = load_causal_lm(gguf, fmt="gguf", sha256=sha256(gguf), cache_root=cache)
    assert lm.tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True)
    assert lm.eos_ids == [2]
    return Path(lm.model.name_or_path)


def truncate(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def edit_in_place(folder: Path) -> None:  # same size, different bytes
    path = folder / "config.json"
    path.write_text(path.read_text().replace('"hidden_size": 64', '"hidden_size": 65'))


def lose_manifest(folder: Path) -> None:  # what an interrupted copy or a foreign writer leaves
    (folder / MANIFEST).unlink()


def lose_file(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()


@pytest.mark.parametrize("damage", [truncate, edit_in_place, lose_manifest, lose_file], ids=lambda f: f.__name__)
def test_a_conversion_is_reused_and_a_damaged_one_rebuilt(
    tiny_gguf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]
) -> None:
    caplog.set_level(logging.INFO, logger="podium.worker")
    cache = DerivedCache(tmp_path / "user", fallback=tmp_path / "home")
    folder = load(tiny_gguf, cache)
    assert folder == tmp_path / "user" / "converted" / sha256(tiny_gguf)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert sum("converting tiny-llama.gguf" in m for m in messages(caplog)) == 1

    caplog.clear()
    assert load(tiny_gguf, cache) == folder  # a second home: no conversion
    assert not any("converting" in m for m in messages(caplog))
    assert any(m.startswith("reusing converted tiny-llama.gguf") for m in messages(caplog))

    damage(folder)
    assert check(folder, "converted", sha256(tiny_gguf)) is not None
    (folder.parent / f".{folder.name}.tmp-99999").mkdir()  # left by a conversion that died
    caplog.clear()
    assert load(tiny_gguf, cache) == folder
    assert any("is damaged" in m and "rebuilding" in m for m in messages(caplog)), messages(caplog)
    assert sum("converting tiny-llama.gguf" in m for m in messages(caplog)) == 1
    assert check(folder, "converted", sha256(tiny_gguf)) is None
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".") and "tmp" in p.name) == []
    assert not (tmp_path / "home").exists()


def test_a_moved_entry_is_rehashed_once_and_trusted(tiny_gguf: Path, tmp_path: Path) -> None:
    folder = load(tiny_gguf, DerivedCache(tmp_path / "user"))
    copy = tmp_path / "copied"
    shutil.copytree(folder.parent.parent, copy)  # new mtimes: the files are hashed, then their mtimes kept
    entry = copy / "converted" / folder.name
    before = json.loads((entry / MANIFEST).read_text())["files"]
    assert check(entry, "converted", folder.name) is None
    after = json.loads((entry / MANIFEST).read_text())["files"]
    assert after["model.safetensors"]["mtime_ns"] == (entry / "model.safetensors").stat().st_mtime_ns
    assert after["model.safetensors"]["sha256"] == before["model.safetensors"]["sha256"]


CONVERT = """
import logging, sys, time
from pathlib import Path
logging.basicConfig(level="INFO", format="%(name)s: %(message)s", stream=sys.stdout)
from transformers import AutoModelForCausalLM, AutoTokenizer  # loaded before the start line
from podium.models.worker.derived import DerivedCache
from podium.models.worker.loader import convert_gguf
gguf, root, go, sha = sys.argv[1:5]
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.002)
print("folder", convert_gguf(Path(gguf), DerivedCache(Path(root)), sha), flush=True)
"""


def test_concurrent_first_use_converts_once(tiny_gguf: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    args = [str(tiny_gguf), str(tmp_path / "user"), str(go), sha256(tiny_gguf)]
    procs = [
        subprocess.Popen([sys.executable, "-c", CONVERT, *args], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        for p in procs:  # every process has imported everything: they reach the cache together
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), outs
    log = "\n".join(outs)
    assert log.count("converting tiny-llama.gguf") == 1, log
    assert log.count("(built by another process)") == 1, log
    folders = {line.split(" ", 1)[1] for line in log.splitlines() if line.startswith("folder ")}
    assert folders == {str(tmp_path / "user" / "converted" / sha256(tiny_gguf))}
    assert check(Path(folders.pop()), "converted", sha256(tiny_gguf)) is None


def test_a_cache_path_that_cannot_be_a_folder_falls_back_to_the_home(
    tiny_gguf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podium.worker")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folder = load(tiny_gguf, DerivedCache(blocker / "cache", fallback=tmp_path / "home"))
    assert folder == tmp_path / "home" / "converted" / sha256(tiny_gguf)
    assert any(m.startswith(f"cannot write the model cache {blocker / 'cache'}") for m in messages(caplog))


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


IN_NAMESPACE = """
import logging, sys
from pathlib import Path
logging.basicConfig(level="INFO", format="%(name)s: %(message)s", stream=sys.stdout)
from podium.models.worker.derived import DerivedCache
from podium.models.worker.loader import convert_gguf
gguf, root, home, sha = sys.argv[1:5]
print("folder", convert_gguf(Path(gguf), DerivedCache(Path(root), fallback=Path(home)), sha), flush=True)
"""


@pytest.mark.skipif(not _can_unshare(), reason="needs `unshare -rm` (user and mount namespaces) for a small tmpfs")
@pytest.mark.parametrize(("mount", "reason"), [("size=64k", "No space left"), ("ro", "Read-only file system")])
def test_a_full_or_read_only_cache_falls_back_to_the_home(
    tiny_gguf: Path, tmp_path: Path, mount: str, reason: str
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    script = tmp_path / "convert.py"
    script.write_text(IN_NAMESPACE)
    shell = f'mount -t tmpfs -o {mount} tmpfs "$1" && shift && exec "$@"'
    convert = [sys.executable, str(script), str(tiny_gguf), str(user / "cache"), str(tmp_path / "home")]
    out = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell, "sh", str(user), *convert, sha256(tiny_gguf)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"cannot write the model cache {user / 'cache'} ({reason}" in out.stdout, out.stdout
    home_entry = tmp_path / "home" / "converted" / sha256(tiny_gguf)
    assert f"folder {home_entry}" in out.stdout
    assert check(home_entry, "converted", sha256(tiny_gguf)) is None
    assert out.stdout.count("converting tiny-llama.gguf") == 1  # converted once, saved where it fits


def entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]  # not the lock files


def _logits(fast: FastLlama, prompt: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = fast.prefill(prompt, 0)
    return out


def test_int8_weights_are_cached_and_give_the_same_numbers(
    tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podium.worker")
    cache = DerivedCache(tmp_path / "user")
    prompt = [101, 2023, 2003, 1037, 3231, 1997, 1996, 3194, 102]

    def backend(use: DerivedCache | None) -> FastLlama:
        lm = load_causal_lm(tiny_models["llama"], fmt="hf", sha256="tiny-llama", cache_root=cache, dtype="int8")
        fast = make_backend(lm, 2, use)
        assert isinstance(fast, FastLlama)
        return fast

    fresh = _logits(backend(None), prompt)
    assert not (tmp_path / "user" / "int8").exists()
    first = _logits(backend(cache), prompt)
    assert any(m.startswith("quantised to batch-invariant int8") for m in messages(caplog))
    [entry] = entries(tmp_path / "user" / "int8")
    assert (entry / "int8.safetensors").exists() and check(entry, "int8", entry.name) is None
    caplog.clear()
    again = _logits(backend(cache), prompt)
    assert not any(m.startswith("quantised") for m in messages(caplog))
    assert any(m.startswith("int8 weights loaded from the cache") for m in messages(caplog))
    assert torch.equal(fresh, first) and torch.equal(first, again)

    # other weights (a different key) do not pick up these int8 weights
    caplog.clear()
    lm = load_causal_lm(tiny_models["llama2"], fmt="hf", sha256="tiny-llama-b", cache_root=cache, dtype="int8")
    other = make_backend(lm, 2, cache)
    assert any(m.startswith("quantised") for m in messages(caplog))
    assert not torch.equal(_logits(other, prompt), again)
    assert len(entries(tmp_path / "user" / "int8")) == 2


def test_served_models_are_mapped_from_safetensors_with_the_same_numbers(
    tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker loads a model the fast path runs without building its transformers module (config.json
    and lazily mapped safetensors): fp32 and cached int8 logits, end-of-sequence ids and context length are
    those of the module; a model the fast path does not run (GPT-2) is still loaded as a module."""
    from podium.models.worker.loader import SafetensorsModel

    caplog.set_level(logging.INFO, logger="podium.worker")
    cache = DerivedCache(tmp_path / "user")
    prompt = [101, 2023, 2003, 1037, 3231, 1997, 1996, 3194, 102]
    folder = tiny_models["llama"]
    for dtype in ("float32", "int8"):
        module = load_causal_lm(folder, fmt="hf", sha256="tiny-llama", cache_root=cache, dtype=dtype)
        mapped = load_causal_lm(folder, fmt="hf", sha256="tiny-llama", cache_root=cache, dtype=dtype, module=False)
        assert isinstance(mapped.model, SafetensorsModel) and not isinstance(module.model, SafetensorsModel)
        assert (mapped.eos_ids, mapped.context_length) == (module.eos_ids, module.context_length)
        assert mapped.model.config.vocab_size == module.model.config.vocab_size
        assert mapped.tokenizer.encode("a test of the engine") == module.tokenizer.encode("a test of the engine")
        reference, fast = make_backend(module, 2, cache), make_backend(mapped, 2, cache)
        assert isinstance(fast, FastLlama)
        assert torch.equal(_logits(reference, prompt), _logits(fast, prompt))
    # with cached int8 weights the mapped model never reads its fp32 projections
    assert all(lin.int8 and lin._weight is None for lin in fast.linears())
    assert any(m.startswith("int8 weights loaded from the cache") for m in messages(caplog))

    gpt2 = load_causal_lm(tiny_models["gpt2"], fmt="hf", sha256="tiny-gpt2", cache_root=cache, module=False)
    assert not isinstance(gpt2.model, SafetensorsModel)
    assert any("loading" in m and "through transformers" in m for m in messages(caplog))
