"""The multi-stream model's costs, measured side by side in one run.

1. Training step (forward + backward) of the multi-stream model vs the plain HF backbone on the same
   number of frames (target ratio <= 1.00), and vs the backbone with a head as large as the joint
   vocabulary (what the streams themselves cost: summed embeddings, 8 codebook heads, offsets); with
   stream 0 scored over the whole vocabulary ("full") and over the ids its input's modality allows
   ("modality", `MultiStreamConfig.stream0_softmax`). Default shape: SmolLM2-135M's widths with 30
   layers, OpusLM's vocabulary for it (5000 semantic ids, 8 x 1024 codes, 49,152 text tokens), every
   cell an audio cell (the most head work a frame can need under "full").
2. Decoding: wall time per frame when generating T and 4T frames with the KV cache (target <= 1.2,
   i.e. O(T) in total), and frames per second at batch 8 vs batch 1.

    python bench/model_step_and_decoding.py [--layers 30] [--frames 256] [--decode-frames 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from opuslm.infer.decode import Prompt, generate
from opuslm.infer.sampling import Sampling
from opuslm.model.config import MultiStreamConfig
from opuslm.model.multistream import OpusLM
from opuslm.vocab import PAD_ID, JointVocab

from gpu_step import audio_rows  # the random audio rows both benchmarks train on (bench/ is on the path)


def smollm_like(layers: int, text_size: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=text_size, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
                       num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True, max_position_embeddings=8192)


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def training_step(args) -> None:
    vocab = JointVocab(semantic_size=5000, num_codebooks=8, codebook_size=1024, text_size=49152)
    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_config(smollm_like(args.layers, vocab.text_size))
    plain_joint = AutoModelForCausalLM.from_config(smollm_like(args.layers, vocab.size))  # same head size
    multi = OpusLM.from_llm(smollm_like(args.layers, vocab.text_size), vocab)
    restricted = OpusLM.from_llm(smollm_like(args.layers, vocab.text_size), vocab, MultiStreamConfig(stream0_softmax="modality"))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab.text_size, (args.batch, args.frames), generator=g)
    frames = audio_rows(vocab, multi.delays, args.batch, args.frames, g)  # exactly args.frames steps
    mask = frames != PAD_ID

    def plain_step():
        plain.zero_grad(set_to_none=True)
        plain(input_ids=ids, labels=ids).loss.backward()

    def plain_joint_step():
        plain_joint.zero_grad(set_to_none=True)
        plain_joint(input_ids=ids, labels=ids).loss.backward()

    def multi_step():
        multi.zero_grad(set_to_none=True)
        multi.loss(frames, mask).loss.backward()

    def restricted_step():
        restricted.zero_grad(set_to_none=True)
        restricted.loss(frames, mask).loss.backward()

    t_plain, t_joint, t_multi, t_restricted = (seconds(step, args.repeats)
                                               for step in (plain_step, plain_joint_step, multi_step, restricted_step))
    print(f"training step, {args.batch} x {args.frames} frames, {args.layers} layers of SmolLM2-135M width, "
          f"joint vocabulary {vocab.size}:")
    print(f"  plain HF backbone (text vocabulary {vocab.text_size}) {t_plain:.3f} s, multi-stream {t_multi:.3f} s, "
          f"ratio {t_multi / t_plain:.2f}; with the modality softmax {t_restricted:.3f} s, ratio "
          f"{t_restricted / t_plain:.2f} (target <= 1.00)")
    print(f"  plain HF backbone with the joint vocabulary's head {t_joint:.3f} s: the streams' own overhead, "
          f"ratio {t_multi / t_joint:.2f}")


def decoding(args) -> None:
    vocab = JointVocab(semantic_size=256, num_codebooks=8, codebook_size=256, text_size=1024)
    config = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=704, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = OpusLM.from_llm(config, vocab).eval()
    with torch.no_grad():  # a zero <eos> row loses to the best random semantic logit: runs go to max_frames
        model.backbone.get_output_embeddings().weight[vocab.special("<eos>")] = 0
    rng = np.random.default_rng(0)

    def prompts(batch: int, frames: int) -> list[Prompt]:
        out = []
        for _ in range(batch):
            p = np.zeros((vocab.num_streams, 20), np.int64)
            p[0] = rng.integers(vocab.text_offset, vocab.size, 20)
            out.append(Prompt(p, "audio", vocab.special("<eos>"), frames))
        return out

    sampling = Sampling(greedy_audio=True)
    short, long = args.decode_frames, 4 * args.decode_frames
    per_frame = {}
    for frames in (short, long):
        batch = prompts(1, frames)
        per_frame[frames] = seconds(lambda: generate(model, batch, sampling), 2) / frames
    print(f"decoding (6 layers x 256, 9 streams), seconds per frame: T={short}: {per_frame[short] * 1e3:.1f} ms, "
          f"4T={long}: {per_frame[long] * 1e3:.1f} ms, ratio {per_frame[long] / per_frame[short]:.2f} (target <= 1.2)")
    one, eight = prompts(1, short), prompts(8, short)
    rate1 = short / seconds(lambda: generate(model, one, sampling), 2)
    rate8 = 8 * short / seconds(lambda: generate(model, eight, sampling), 2)
    print(f"  throughput: batch 1 {rate1:.0f} frames/s, batch 8 {rate8:.0f} frames/s, ratio {rate8 / rate1:.2f} (target >= 6)")
    # the same backbone alone, through transformers' own generate with its KV cache: one token per step
    plain = AutoModelForCausalLM.from_config(config).eval()
    plain_rates = []
    for batch, rate in ((1, rate1), (8, rate8)):
        ids = torch.randint(0, 1024, (batch, 20), generator=torch.Generator().manual_seed(0))

        def backbone_generate():
            plain.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=short, min_new_tokens=short,
                           do_sample=False, use_cache=True, pad_token_id=0)

        plain_rate = batch * short / seconds(backbone_generate, 2)
        plain_rates.append(plain_rate)
        print(f"  batch {batch}: the backbone's own generate {plain_rate:.0f} tokens/s; multi-stream frames/s "
              f"{rate / plain_rate:.2f} of it (target >= 0.8)")
    print(f"  the backbone's own generate, batch 8 / batch 1: {plain_rates[1] / plain_rates[0]:.2f} (the "
          f"ceiling this machine puts on the multi-stream ratio above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=30, help="SmolLM2-135M has 30")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed steps (2 left outliers of 25%%)")
    parser.add_argument("--decode-frames", type=int, default=50)
    args = parser.parse_args()
    training_step(args)
    decoding(args)


if __name__ == "__main__":
    main()
