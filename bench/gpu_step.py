"""A real-scale training step on one GPU in bf16: frames/s, tokens/s and MFU, with stream 0 scored over
the whole joint vocabulary ("full") and over the ids its input's modality allows ("modality").

The model is a plan config's backbone (`configs/*.yaml`, the shape alone: random weights, nothing is
downloaded) grown to its joint vocabulary, trained as a stage trains it: bf16 autocast, activation
checkpointing when the plan says so, AdamW, gradient clipping. Every row is one packed row of the plan's
`row_frames`, every cell an audio cell (semantic id and codes: the most head work a frame can need
under "full", as in `model_step_and_decoding.py`).

MFU = FLOPs per step / (step seconds x peak bf16 FLOPs of the GPU), with the FLOPs `opuslm plan` counts
for the full softmax (6 x (non-embedding parameters + scored head rows x hidden) + causal attention) for
both rows: the modality softmax does less work for the same step, so its MFU reads as useful work per
second by that same count.

    python bench/gpu_step.py configs/smollm2-1.7b.yaml [--rows 1] [--frames 8192] [--steps 10] [--gpu h100]
    python bench/gpu_step.py configs/smollm2-135m.yaml --device cpu --layers 2 --frames 256 --steps 2  # the script itself

Without a GPU and without --device cpu it says so and exits 0, so `make bench` passes on CPU machines.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from opuslm.interleave import delay
from opuslm.model.config import MultiStreamConfig
from opuslm.model.multistream import OpusLM
from opuslm.plan import PEAK_BF16_FLOPS, backbone_config, load_plan_config, plan
from opuslm.vocab import PAD_ID, JointVocab

REPO = Path(__file__).resolve().parent.parent


def audio_rows(vocab: JointVocab, delays, rows: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """`[rows, streams, frames]` delayed frames of random semantic ids and codes."""
    steps = frames - max(delays)
    undelayed = torch.empty(rows, vocab.num_streams, steps, dtype=torch.long)
    undelayed[:, 0] = vocab.semantic_offset + torch.randint(0, vocab.semantic_size, (rows, steps), generator=generator)
    for k in range(vocab.num_codebooks):
        undelayed[:, k + 1] = vocab.codebook_offset(k) + torch.randint(0, vocab.codebook_size, (rows, steps),
                                                                      generator=generator)
    return delay(undelayed, delays, PAD_ID)


def timed_steps(model: OpusLM, frames: torch.Tensor, steps: int, checkpointing: bool, device: torch.device) -> float:
    """Mean seconds of a training step after two warm-up steps."""
    if checkpointing:
        model.enable_activation_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    mask = frames != PAD_ID

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model.loss(frames, mask).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, nargs="?", default=REPO / "configs" / "smollm2-1.7b.yaml",
                        help="a plan config (configs/*.yaml)")
    parser.add_argument("--rows", type=int, default=1, help="packed rows per step")
    parser.add_argument("--frames", type=int, help="frames per row (default: the plan's row_frames)")
    parser.add_argument("--layers", type=int, help="fewer decoder layers than the plan's (a quick check)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after two warm-up steps)")
    parser.add_argument("--gpu", choices=sorted(PEAK_BF16_FLOPS), default="h100", help="whose peak MFU divides by")
    parser.add_argument("--device", help="cuda (default when there is one) or cpu")
    args = parser.parse_args()

    if args.device is None and not torch.cuda.is_available():
        print("no GPU here: skipped (check the script on CPU with --device cpu --layers 2 --frames 256 --steps 2)")
        return
    device = torch.device(args.device or "cuda")
    config = load_plan_config(args.config)
    frames = args.frames or config.train.row_frames
    if args.layers:
        if config.backbone.llm:
            parser.error("--layers needs a config that gives the backbone's family and shape, not an llm folder")
        shape = {**config.backbone.shape, "num_hidden_layers": args.layers}
        config = config.model_copy(update={"backbone": config.backbone.model_copy(update={"shape": shape})})
    backbone = backbone_config(config.backbone)
    one_gpu = config.train.model_copy(update={"gpus": 1, "parallel": "ddp", "rows_per_gpu": args.rows,
                                              "row_frames": frames, "grad_accum": 1, "gpu": args.gpu})
    counted = plan(config.model_copy(update={"train": one_gpu}))
    vocab: JointVocab = counted["vocab"]
    print(f"{config.name}: {counted['layers']} layers, hidden {counted['hidden']}, {vocab.size:,} ids, "
          f"{args.rows} x {frames} frames, bf16 on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    generator = torch.Generator().manual_seed(0)
    results = {}
    for softmax in ("full", "modality"):
        torch.manual_seed(0)
        model = OpusLM.from_llm(backbone, vocab, MultiStreamConfig(delays=config.delays, stream0_softmax=softmax))
        model.to(device)
        rows = audio_rows(vocab, model.delays, args.rows, frames, generator).to(device)
        seconds = timed_steps(model, rows, args.steps, config.train.activation_checkpointing, device)
        cells = int((rows != PAD_ID).sum())
        mfu = counted["flops_per_step"] / (seconds * PEAK_BF16_FLOPS[args.gpu])
        peak = f", peak memory {torch.cuda.max_memory_allocated(device) / 1024 ** 3:.1f} GiB" if device.type == "cuda" else ""
        print(f"  stream 0 {softmax:8s}: {seconds:.3f} s/step, {args.rows * frames / seconds:,.0f} frames/s, "
              f"{cells / seconds:,.0f} tokens/s, MFU {mfu:.1%} of {args.gpu} bf16{peak}")
        results[softmax] = seconds
        del model, rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    print(f"  modality / full step time: {results['modality'] / results['full']:.2f}")


if __name__ == "__main__":
    main()
