"""Fine-tuning costs: LoRA against full fine-tuning, side by side in one run.

For each way of tuning, in a fresh process (so peak memory is its own): trainable parameters, peak
resident memory after building the model and optimiser and taking the steps, and the training step
time (forward, backward, AdamW) on the same frames. Default shape: SmolLM2-135M's widths with 30 layers
and OpusLM's vocabulary for it (62,600 ids), 2 x 256 frames of audio and text.

    python bench/finetune_lora.py [--layers 30] [--frames 256] [--rank 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

VARIANTS = {
    "full fine-tuning": {"lora": None, "freeze": []},
    "LoRA, tables trained": {"lora": True, "freeze": ["audio_rows"]},
    "LoRA only": {"lora": True, "freeze": ["audio_rows", "text_rows", "stream_offsets"]},
}


def measure(name: str, args) -> dict:
    import torch
    from transformers import LlamaConfig

    from opuslm.interleave import delay
    from opuslm.model.multistream import OpusLM
    from opuslm.train.config import LoraSettings, TuneConfig
    from opuslm.train.trainer import parameter_groups
    from opuslm.train.tuning import apply_tuning, trainable_parameters
    from opuslm.vocab import PAD_ID, JointVocab

    torch.manual_seed(0)
    vocab = JointVocab(semantic_size=5000, num_codebooks=8, codebook_size=1024, text_size=49152)
    config = LlamaConfig(vocab_size=vocab.text_size, hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    model = OpusLM.from_llm(config, vocab)
    variant = VARIANTS[name]
    lora = LoraSettings(rank=args.rank, alpha=2 * args.rank) if variant["lora"] else None
    apply_tuning(model, TuneConfig(lora=lora, freeze=variant["freeze"]))
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    undelayed = torch.full((args.batch, vocab.num_streams, args.frames - 8), PAD_ID, dtype=torch.long)
    half = (args.frames - 8) // 2  # audio, then text
    undelayed[:, 0, :half] = vocab.semantic_offset + torch.randint(0, 5000, (args.batch, half), generator=g)
    for k in range(8):
        undelayed[:, k + 1, :half] = vocab.codebook_offset(k) + torch.randint(0, 1024, (args.batch, half), generator=g)
    undelayed[:, 0, half:] = vocab.text_offset + torch.randint(0, 49152, (args.batch, args.frames - 8 - half), generator=g)
    frames = delay(undelayed, model.delays, PAD_ID)
    mask = frames != PAD_ID

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.loss(frames, mask).loss.backward()
        optimizer.step()

    step()  # warm-up; AdamW's state exists from here on
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable_parameters(model), "total": total, "seconds": best,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=30, help="SmolLM2-135M has 30")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    results = {}
    for name in VARIANTS:
        with context.Pool(1) as pool:
            results[name] = pool.apply(measure, (name, args))
    full = results["full fine-tuning"]
    print(f"fine-tuning, {args.batch} x {args.frames} frames, {args.layers} layers of SmolLM2-135M width, LoRA rank "
          f"{args.rank} on every linear layer of the backbone:")
    print(f"  {'':24s} {'trainable':>12s} {'peak memory':>12s} {'step':>8s} {'step / full':>12s}")
    for name, r in results.items():
        print(f"  {name:24s} {r['trainable'] / 1e6:9.1f} M  {r['peak_mib']:8.0f} MiB {r['seconds']:7.3f} s "
              f"{r['seconds'] / full['seconds']:11.2f}")
    print("  (trainable counts whole tensors: a table with frozen rows counts whole; its frozen rows get no update)")


if __name__ == "__main__":
    main()
