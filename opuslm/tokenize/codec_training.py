"""`opuslm tokenizers train-codec --kind neural`: train the small neural codec on a corpus, on CPU.

Losses: multi-scale log-mel L1 (FFT sizes 256..2048) + waveform L1 + the residual VQ's commitment.
No adversarial loss: it would not fit a few CPU minutes. In the demo's budget (400 steps) the judge
understood almost nothing of its resynthesis (WER 0.98), which is why the demo uses the mel-pitch
codec. `reconstruction_metrics` (mel distance: mean L1 between log10 mel spectrograms, 80 bands, FFT
1024; SI-SNR in dB) is what `bench/tokenize_throughput.py` reports; the codec report
(`opuslm/eval/codec_report.py`) is what a listener gets.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from opuslm.json_files import write_json
from opuslm.tokenize.features import LogMel
from opuslm.tokenize.small_codec import SmallCodec, SmallCodecConfig

MEL_SCALES = (256, 512, 1024, 2048)


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio in dB (both zero-meaned, same length)."""
    estimate, reference = estimate - estimate.mean(), reference - reference.mean()
    target = (estimate @ reference) / max(reference @ reference, 1e-12) * reference
    noise = estimate - target
    return float(10 * np.log10(max(target @ target, 1e-12) / max(noise @ noise, 1e-12)))


def mel_distance(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    log_mel = LogMel(sample_rate, 1024, 256, 80)
    a, b = (log_mel(torch.from_numpy(np.asarray(x, np.float32))) for x in (estimate, reference))
    return float((a - b).abs().mean())


def reconstruction_metrics(tokenizer, wavs: list[np.ndarray], sample_rate: int) -> dict:
    """Mean mel distance and SI-SNR of decode(encode(x)) over `wavs`."""
    mels, snrs = [], []
    for wav in wavs:
        out = tokenizer.decode(tokenizer.encode(wav, sample_rate))[: len(wav)]
        mels.append(mel_distance(out, wav, sample_rate))
        snrs.append(si_snr(out, wav))
    return {"mel_distance": round(float(np.mean(mels)), 4), "si_snr_db": round(float(np.mean(snrs)), 2),
            "utterances": len(wavs)}


def train_small_codec(train_wavs: list[np.ndarray], out: str | Path, config: SmallCodecConfig | None = None,
                      steps: int = 2000, batch_size: int = 16, segment_seconds: float = 1.0, lr: float = 2e-3,
                      seed: int = 0, progress: bool = True, log=print) -> Path:
    """Train on random crops of `train_wavs` (mono float32 at config.sample_rate); save to `out`."""
    from safetensors.torch import save_file
    from opuslm.progress import progress_bar

    config = config or SmallCodecConfig()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = SmallCodec(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps))))
    mels = [LogMel(config.sample_rate, n, n // 4, min(80, n // 8)) for n in MEL_SCALES]
    segment = int(segment_seconds * config.sample_rate) // config.hop * config.hop
    usable = [w for w in train_wavs if len(w) >= segment]
    if not usable:
        raise ValueError(f"no training audio is at least {segment_seconds} s long")
    started = time.time()
    bar = progress_bar(range(steps), desc="training codec", disable=not progress)
    for step in bar:
        crops = []
        for _ in range(batch_size):
            wav = rng.choice(usable)
            start = rng.randrange(len(wav) - segment + 1)
            crops.append(wav[start: start + segment])
        x = torch.from_numpy(np.stack(crops))[:, None, :]
        y, _, commit = model(x, torch.full((batch_size,), segment))
        mel_loss = sum((m(y[:, 0]) - m(x[:, 0])).abs().mean() for m in mels) / len(mels)
        loss = mel_loss + 0.1 * (y - x).abs().mean() + commit
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 25 == 0:
            bar.set_postfix(mel=f"{mel_loss.item():.3f}", commit=f"{commit.item():.3f}", refresh=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out / "model.safetensors"))
    meta = {"type": "small_codec", "config": config.to_dict(),
            "training": {"steps": steps, "batch_size": batch_size, "segment_seconds": segment_seconds, "lr": lr,
                         "seed": seed, "seconds": round(time.time() - started, 1)}}
    write_json(out / "codec.json", meta, indent=2)
    return out
