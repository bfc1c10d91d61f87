"""llama.cpp for the engine benchmark: llama-cpp-python built from its sdist, and the GGUF
converters that sdist vendors, installed into a cache folder (never into the project's venv).

`python tests/benchmarks/llamacpp.py` only builds (the compile takes minutes: start it early);
the benchmark reuses the cached build. The converters run under the project's interpreter
(they need torch and transformers, which it has) with the cached folder on `PYTHONPATH`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.3.36"  # llama-cpp-python; its sdist vendors llama.cpp and gguf-py
CACHE = Path(os.environ.get("LORAFAAS_BENCH_CACHE", "~/.cache/lorafaas-bench")).expanduser()
# Only the library the bindings load: no llava/mtmd, tools, tests or examples to compile.
CMAKE_ARGS = ("-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
              "-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON")
BUILD_TOOLS = {"cmake": "cmake", "gcc": "gcc", "g++": "g++", "make": "make"}  # binary: apt
# Run in the converter's process before its own code: the demo tokenizer's pre-tokenizer
# hash is in no table of the converter, and speed does not depend on which name it gets.
PRETOKENIZER_PATCH = """
import runpy, sys
from conversion.base import TextModel
TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass(frozen=True)
class LlamaCpp:
    """Where the cached llama.cpp lives: the bindings' folder and the vendored sources."""

    site: Path  # llama_cpp and gguf, for PYTHONPATH
    source: Path  # vendor/llama.cpp of the sdist: convert_hf_to_gguf.py, conversion/

    def env(self) -> dict[str, str]:
        """The environment a process needs to import llama_cpp and the installed gguf."""
        path = os.pathsep.join(p for p in (str(self.site), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "NO_LOCAL_GGUF": "1"}

    def convert(self, script: str, *args: str | Path) -> None:
        """Run one of the vendored converters, its pre-tokenizer lookup patched."""
        env = self.env()
        env["PYTHONPATH"] = os.pathsep.join((str(self.source), env["PYTHONPATH"]))
        subprocess.run([sys.executable, "-c", PRETOKENIZER_PATCH, str(self.source / script),
                        *map(str, args)], check=True, env=env, cwd=self.source)

    def gguf(self, backbone: Path, adapter: Path) -> tuple[Path, Path]:
        """The backbone as GGUF float32 and the adapter as a GGUF LoRA (converted once)."""
        out = self.site.parent / "gguf" / _fingerprint(backbone, adapter)
        model, lora = out / "backbone-f32.gguf", out / "adapter-f32.gguf"
        if not (model.exists() and lora.exists()):
            out.mkdir(parents=True, exist_ok=True)
            self.convert("convert_hf_to_gguf.py", backbone, "--outtype", "f32",
                         "--outfile", model)
            self.convert("convert_lora_to_gguf.py", adapter, "--base", backbone,
                         "--outtype", "f32", "--outfile", lora)
        return model, lora

    def step_ms(self, model: Path, lora: Path, threads: int, prompt: str, tokens: int
                ) -> float:
        """ms per decoded token, greedy, in a process of its own with `threads` threads."""
        answer = subprocess.run(
            [sys.executable, __file__, "measure", str(model), str(lora), str(threads),
             prompt, str(tokens)], check=True, env=self.env(), capture_output=True, text=True)
        return float(json.loads(answer.stdout.splitlines()[-1])["step_ms"])


def _fingerprint(*folders: Path) -> str:
    """Names the conversions of these folders' files as they are now."""
    digest = hashlib.sha256(VERSION.encode())
    for folder in folders:
        for path in sorted(folder.resolve().iterdir()):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _measure(model: str, lora: str, threads: int, prompt: str, tokens: int) -> float:
    """In the measuring process: decode `tokens` greedy tokens (EOS does not stop
    `generate`), the first of them prefill's; ms per token after it."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, lora_path=lora, n_threads=threads, n_threads_batch=threads,
                n_ctx=256, n_batch=256, verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=True)
    for _ in llm.generate(ids, temp=0.0, reset=True):  # warm-up: one token
        break
    stamps = []
    for _ in llm.generate(ids, temp=0.0, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) == tokens:
            break
    return (stamps[-1] - stamps[0]) * 1000 / (tokens - 1)


def _pip(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *map(str, args)],
                   check=True)


def _ensure_build_tools() -> None:
    missing = sorted({apt for tool, apt in BUILD_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    packages = ["build-essential", "cmake"]
    print(f"llama.cpp needs {', '.join(missing)} to compile; installing the Debian packages "
          f"{' '.join(packages)} with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                   check=True)


def _sources(root: Path) -> Path:
    unpacked = root / f"llama_cpp_python-{VERSION}"
    if unpacked.is_dir():
        return unpacked
    sdist = root / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                    ":all:", f"llama-cpp-python=={VERSION}", "-d", str(sdist)], check=True)
    with tarfile.open(sdist / f"llama_cpp_python-{VERSION}.tar.gz") as archive:
        archive.extractall(root, filter="data")
    return unpacked


def ensure_llamacpp(cache: Path = CACHE) -> LlamaCpp:
    """The cached build, compiled first if it is not there (minutes on a small machine)."""
    root = cache / "llamacpp"
    root.mkdir(parents=True, exist_ok=True)
    # One build at a time: a second benchmark waits for the first's build, then uses it.
    with (root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_built(root)


def _ensure_built(root: Path) -> LlamaCpp:
    site = root / f"site-{VERSION}"
    unpacked = _sources(root)
    found = LlamaCpp(site, unpacked / "vendor" / "llama.cpp")
    if (site / "llama_cpp" / "lib" / "libllama.so").exists() and (site / "gguf").is_dir():
        return found
    _ensure_build_tools()
    print(f"building llama-cpp-python {VERSION} from its sdist into {site} (minutes)",
          file=sys.stderr, flush=True)
    building = root / f"building-{VERSION}"
    shutil.rmtree(building, ignore_errors=True)
    os.environ.update(CMAKE_ARGS=CMAKE_ARGS,
                      CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 1))
    _pip("--target", building, unpacked)
    _pip("--target", building, unpacked / "vendor" / "llama.cpp" / "gguf-py", "diskcache")
    building.rename(site)  # complete or absent: a failed build is retried, not half-used
    return found


def main() -> None:
    """Build (no arguments), or measure in a process that imports llama_cpp."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    measure = commands.add_parser("measure")
    for name, kind in (("model", str), ("lora", str), ("threads", int), ("prompt", str),
                       ("tokens", int)):
        measure.add_argument(name, type=kind)
    args = parser.parse_args()
    if args.command == "measure":
        step = _measure(args.model, args.lora, args.threads, args.prompt, args.tokens)
        print(json.dumps({"step_ms": step}))
    else:
        print(ensure_llamacpp())


if __name__ == "__main__":
    main()
