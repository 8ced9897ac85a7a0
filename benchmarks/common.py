"""Shared pieces of the benchmarks: backbones, random adapter stores, clips, server processes, percentiles, and
the table/JSON output every script writes (a process tree's memory and CPU: ``benchmarks.process_tree``).

Benchmarks never import test code: the server processes they start are the real ``python -m server``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import soundfile as sf

from elp.tasks import set_task_names, set_tasks

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
#: where every benchmark writes its JSON and PNG; ``ELP_BENCH_RESULTS`` moves it (a rehearsal that must not
#: overwrite the committed results, e.g. ``scripts/device_bench.sh --quick``)
RESULTS_DIR = Path(os.environ.get("ELP_BENCH_RESULTS") or REPO_ROOT / "benchmarks" / "results")
CORPUS_DIR = REPO_ROOT / "data" / "corpus"
DEFAULT_BACKBONE = "models/whisper-base"
#: ``--backbone`` shortcuts; anything else is taken as a folder
BACKBONE_CHOICES = ("whisper-base", "wavlm-base-plus")
#: endpoint -> adapter-set task, and task -> default adapter id, from the task registry
ENDPOINT_TASKS = {spec.endpoint: spec.name for spec in set_tasks()}
DEFAULT_IDS = {spec.name: spec.default_adapter for spec in set_tasks()}
MIB = 1024 * 1024

# child processes and this one: no progress bars in benchmark output
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="whisper-base",
                        help=f"{' or '.join(BACKBONE_CHOICES)} (random weights, base-sized), or a backbone folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (server, baselines and raw model)")
    parser.add_argument("--quick", action="store_true", help="fewer requests per point (a few minutes on 2 cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")


# ------------------------------------------------------------------------------------------------ backbones


def prepare_backbone(name: str, workdir: Path) -> Path:
    """A backbone folder for ``name``: the embedded Whisper base, or WavLM Base+-shaped random weights."""
    if name in ("whisper-base", DEFAULT_BACKBONE):
        path = REPO_ROOT / DEFAULT_BACKBONE
        if not (path / "config.json").is_file():
            raise SystemExit(f"{path} is missing: run scripts/setup_default_backbone.sh first")
        return path
    if name == "wavlm-base-plus":
        folder = workdir / "wavlm-base-plus-random"
        if not (folder / "config.json").is_file():
            import torch
            from transformers import WavLMConfig, WavLMModel

            torch.manual_seed(0)
            WavLMModel(WavLMConfig()).save_pretrained(folder)  # WavLMConfig() defaults = Base / Base+ shape
        return folder
    path = Path(name)
    if not (path / "config.json").is_file():
        raise SystemExit(f"--backbone {name!r}: not {BACKBONE_CHOICES} and not a folder with config.json")
    return path


def perturbed_backbone_copy(source: Path, target: Path, seed: int, scale: float = 1e-3) -> Path:
    """Same architecture, its own weights: how a per-task fully fine-tuned model is emulated."""
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModel, WhisperModel

    config = AutoConfig.from_pretrained(source)
    model_class = WhisperModel if config.model_type == "whisper" else AutoModel
    model = model_class.from_pretrained(source)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    model.save_pretrained(target)
    for extra in ("preprocessor_config.json",):
        if (source / extra).is_file():
            (target / extra).write_bytes((source / extra).read_bytes())
    return target


# ------------------------------------------------------------------------------------------------ adapters


def build_random_store(backbone_dir: Path, store: Path, sets: dict[str, str], seed: int = 0,
                       device: str = "cpu") -> Path:
    """Write random adapter sets ``{id: task}`` for ``backbone_dir`` into ``store`` (skips existing ones)."""
    from elp import load_backbone
    from elp.testing import make_random_adapter_set

    backbone = None
    for offset, (adapter_id, task) in enumerate(sorted(sets.items())):
        if (store / adapter_id / "adapter_config.json").is_file():
            continue
        backbone = backbone or load_backbone(str(backbone_dir))
        # classes, vocabulary and slots: the task's example set's (elp.tasks)
        make_random_adapter_set(backbone, task, seed=seed + offset).save(store / adapter_id)
    return store


def default_sets() -> dict[str, str]:
    return {adapter_id: task for task, adapter_id in DEFAULT_IDS.items()}


def random_sets_model(args: argparse.Namespace, name: str) -> Any:
    """A ``MultiAdapterModel`` on ``--backbone`` / ``--device`` holding every task's default set, random
    (``default_sets``), keyed by the set ids; backbone copies and stores kept under ``--workdir``/``name``."""
    from elp import AdapterSet, MultiAdapterModel, load_backbone

    with workdir_for(args, name) as workdir:
        backbone_dir = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone_dir, workdir / "store", default_sets())
        model = MultiAdapterModel(load_backbone(str(backbone_dir), device=args.device)).eval()
        for key in DEFAULT_IDS.values():
            model.add_adapter_set(key, AdapterSet.load(store / key, device=args.device))
    return model


# ------------------------------------------------------------------------------------------------ audio


@dataclass(frozen=True)
class Clip:
    name: str
    data: bytes  # the encoded file as uploaded
    duration_s: float
    speaker: str = ""
    text: str | None = None


def corpus_rows(task: str, split: str = "test") -> list[Any]:
    """Manifest rows of one task and split ([] when the corpus is absent)."""
    path = CORPUS_DIR / f"{task}.jsonl"
    if not path.is_file():
        return []
    from training.data.manifest import read_manifest

    return [row for row in read_manifest(path) if row.split == split]


def corpus_clips(count: int, seed: int = 0, min_s: float = 1.0, max_s: float = 10.0) -> list[Clip]:
    """``count`` clips with lengths spread uniformly over [min_s, max_s]: test-split corpus speech
    (clips joined with 0.2 s pauses where the target is longer than one clip), or seeded audio when
    the corpus is absent. Encoded as 16 kHz PCM-16 WAV, as a client would upload."""
    rng = random.Random(seed)
    rows = [row for task in set_task_names() for row in corpus_rows(task)]
    targets = [min_s + (max_s - min_s) * (i + rng.random()) / count for i in range(count)]
    rng.shuffle(targets)
    if not rows:
        return [seeded_clip(target, seed=seed + i) for i, target in enumerate(targets)]
    pause = np.zeros(3200, dtype=np.float32)
    clips = []
    for index, target in enumerate(targets):
        pieces, samples = [], 0
        while samples < target * 16000:
            row = rng.choice(rows)
            piece = decode_clip((CORPUS_DIR / row.path).read_bytes())
            pieces += [piece, pause]
            samples += len(piece) + len(pause)
        wave = np.concatenate(pieces)[: int(target * 16000)]
        buffer = io.BytesIO()
        sf.write(buffer, wave, 16000, format="WAV", subtype="PCM_16")
        clips.append(Clip(f"corpus-mix-{index}", buffer.getvalue(), len(wave) / 16000))
    return clips


def seeded_clip(seconds: float, seed: int = 0, sample_rate: int = 16000) -> Clip:
    from elp.testing import seeded_waveform

    buffer = io.BytesIO()
    sf.write(buffer, seeded_waveform(seconds, seed, sample_rate).numpy(), sample_rate, format="WAV",
             subtype="PCM_16")
    return Clip(f"seeded-{seed}", buffer.getvalue(), seconds)


def decode_clip(data: bytes, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 at ``sample_rate``: what the server feeds the model (``elp.audio``)."""
    from elp.audio import load_audio

    return load_audio(data, sample_rate)


# ------------------------------------------------------------------------------------------------ processes


def on_model_thread(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` on a thread of its own, as the server runs its model. On the main thread, two
    intra-op threads ran a 5 s Whisper call ~10x slower than one on a loaded 2-core machine, on any
    other thread at single-thread speed (``benchmarks/model_calls.py``)."""
    with ThreadPoolExecutor(1, thread_name_prefix="raw-model") as thread:
        return thread.submit(work, *args).result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen | None, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"process exited with {process.returncode}:\n{output[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout_s} s")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process' environment for a child, with the repository first on PYTHONPATH and whatever
    was there kept (wheels installed with ``--target`` on a GPU machine live there)."""
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), **(extra or {})}


@contextlib.contextmanager
def started_processes(commands: Sequence[tuple[list[str], dict[str, str], int]],
                      ready_path: str = "/readyz") -> Iterator[list[subprocess.Popen]]:
    """Start every ``(argv, extra env, port)`` at once (they load in parallel), wait until each is
    ready, and SIGTERM them all afterwards."""
    processes = []
    try:
        for argv, env, _ in commands:
            processes.append(subprocess.Popen(argv, cwd=REPO_ROOT, env=child_env(env), stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT))
        for process, (_, _, port) in zip(processes, commands, strict=True):
            wait_ready(f"http://127.0.0.1:{port}{ready_path}", process)
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: the key benchmark servers are started with (admin calls: loads, unloads, enrolment)
BENCHMARK_API_KEY = "elp-benchmark-key"


#: server flags for seeded stand-in audio: the default voice detector rightly hears no voice in it and would
#: refuse its verification requests (422) and answer its ASR requests without the model
STAND_IN_FLAGS = ("--speech-detector", "level")


@functools.cache
def stand_in_audio() -> bool:
    """Whether the benchmarks send seeded stand-ins (``corpus_clips`` without the corpus) instead of speech."""
    return not any(corpus_rows(task) for task in set_task_names())


def server_command(backbone: Path, store: Path, port: int, device: str = "cpu", *extra: str,
                   speakers_dir: Path | None = None) -> list[str]:
    """A benchmark server's command line; its enrolments go to ``speakers_dir`` (default: beside the store)."""
    speakers = speakers_dir or store.parent / f"speakers-{port}"
    return [sys.executable, "-m", "server", "--backbone", str(backbone), "--adapters-dir", str(store),
            "--speakers-dir", str(speakers), "--port", str(port), "--device", device,
            "--log-level", "warning", "--api-key", BENCHMARK_API_KEY,
            *(STAND_IN_FLAGS if stand_in_audio() else ()), *extra]


# ------------------------------------------------------------------------------------------------ output


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    if not latencies_s:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    values = np.asarray(latencies_s) * 1000.0
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_results(name: str, payload: dict[str, Any], table: str) -> Path:
    """Print the table and save ``benchmarks/results/<name>.json`` (with the table and environment)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {"benchmark": name, "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "environment": environment(), **payload, "table": table}
    path.write_text(json.dumps(document, indent=2, default=str))
    print(table)
    print(f"\nwrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    return path


def workdir_for(args: argparse.Namespace, name: str) -> contextlib.AbstractContextManager[Path]:
    """``--workdir`` (kept: backbones and stores are reused across runs) or a temp dir removed after."""
    import tempfile

    if args.workdir is not None:
        folder = Path(args.workdir) / name
        folder.mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(folder)
    return _temp_path(tempfile.TemporaryDirectory(prefix=f"elp-bench-{name}-"))


@contextlib.contextmanager
def _temp_path(temp: Any) -> Iterator[Path]:
    with temp as name:
        yield Path(name)


def backbone_label(name: str) -> str:
    return Path(name).name if name not in BACKBONE_CHOICES else name
