"""What a listener gets from an acoustic tokenizer: its report on held-out clips.

For each clip, decode(encode(x)) is written beside the original and both are transcribed by the judge
(the project's Whisper by default); the report gives the judge's WER on both, F0 agreement between
them (pyworld's harvest on each, 10 ms frames: the correlation of per-clip median F0, the mean
within-clip correlation of log-F0 on frames voiced in both, the voiced/unvoiced disagreement), the
speaker similarity of resynthesis to original (`opuslm/eval/speaker.py`), the
bitrate, and encode and decode speed (audio seconds per second, one process). Any codec folder gets
the same report (`opuslm tokenizers probe-codec`), so a real codec and the demo's can be compared.

Harvest measures and dio encodes the mel-pitch codec's pitch: two trackers, so the F0 figures do not
grade the codec by its own tracker. They also bound it: `tracker_agreement` is dio against harvest on
the original audio itself.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from opuslm.audio import resample, write_wav
from opuslm.eval.speaker import SpeakerEncoder
from opuslm.json_files import write_json
from opuslm.tokenize.mel_pitch import dio_f0, import_pyworld

SAMPLE_RATE = 16000
F0_RANGE = (60.0, 500.0)


def harvest(wav: np.ndarray) -> np.ndarray:
    pyworld = import_pyworld()
    f0, _ = pyworld.harvest(np.asarray(wav, np.float64), SAMPLE_RATE, f0_floor=F0_RANGE[0], f0_ceil=F0_RANGE[1],
                            frame_period=10.0)
    return f0


def dio(wav: np.ndarray) -> np.ndarray:
    return dio_f0(np.asarray(wav, np.float64), SAMPLE_RATE, *F0_RANGE, frame_period_ms=10.0)


def f0_agreement(reference: list[np.ndarray], other: list[np.ndarray]) -> dict:
    """F0 tracks (Hz, 0 unvoiced) of the same clips -> median-F0 correlation across clips, mean
    within-clip log-F0 correlation on frames voiced in both, and the voiced/unvoiced error rate."""
    medians, correlations, disagreements = [], [], []
    for a, b in zip(reference, other):
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        voiced_a, voiced_b = a > 0, b > 0
        disagreements.append(float(np.mean(voiced_a != voiced_b)) if n else 0.0)
        both = voiced_a & voiced_b
        if both.sum() > 5 and np.std(np.log(a[both])) > 0 and np.std(np.log(b[both])) > 0:
            correlations.append(float(np.corrcoef(np.log(a[both]), np.log(b[both]))[0, 1]))
        if voiced_a.any() and voiced_b.any():
            medians.append((np.median(a[voiced_a]), np.median(b[voiced_b])))
    medians = np.array(medians)
    median_corr = float(np.corrcoef(medians.T)[0, 1]) if len(medians) > 2 else None
    return {"median_f0_corr": median_corr, "frame_log_f0_corr": float(np.mean(correlations)) if correlations else None,
            "vuv_error": float(np.mean(disagreements)) if disagreements else None,
            "clips_voiced_in_both": len(medians)}


def _tracks(tracker, wavs: list[np.ndarray], workers: int) -> list[np.ndarray]:
    if workers <= 1:
        return [tracker(w) for w in wavs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(tracker, wavs))


def codec_report(codec, clips: list[tuple[str, np.ndarray, str]], judge, out: str | Path, workers: int = 2) -> dict:
    """`clips`: (id, 16 kHz waveform, transcript). Writes `original-ID.wav`, `resynthesis-ID.wav` and
    `report.json` (the figures and each clip's transcripts) under `out`; returns the figures."""
    from opuslm.eval.metrics import corpus_wer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    originals = [np.asarray(w, np.float32) for _, w, _ in clips]
    rate = codec.sample_rate
    started = time.perf_counter()
    codes = [codec.encode(resample(w, SAMPLE_RATE, rate), rate) for w in originals]
    encoding = time.perf_counter() - started
    started = time.perf_counter()
    decoded = [codec.decode(c) for c in codes]
    decoding = time.perf_counter() - started
    resyntheses = [resample(d, rate, SAMPLE_RATE)[: len(w)] for d, w in zip(decoded, originals)]
    for (clip_id, _, _), original, resynthesis in zip(clips, originals, resyntheses):
        write_wav(out / f"original-{clip_id}.wav", original, SAMPLE_RATE)
        write_wav(out / f"resynthesis-{clip_id}.wav", resynthesis, SAMPLE_RATE)
    # the judge hears the written files, as a listener does (16-bit, clipped)
    heard = [_read(out / f"resynthesis-{clip_id}.wav") for clip_id, _, _ in clips]
    texts = [text for _, _, text in clips]
    judged_original, judged_resynthesis = judge.transcribe(originals), judge.transcribe(heard)
    reference_f0 = _tracks(harvest, originals, workers)
    encoder = SpeakerEncoder()
    similarity = [float(encoder.embed(a) @ encoder.embed(b)) for a, b in zip(originals, heard)]
    seconds = sum(len(w) for w in originals) / SAMPLE_RATE
    figures = {
        "clips": len(clips), "seconds": round(seconds, 2),
        "judge": getattr(judge, "info", {"kind": type(judge).__name__}),
        "judge_wer_original": corpus_wer(texts, judged_original),
        "judge_wer_resynthesis": corpus_wer(texts, judged_resynthesis),
        "f0": f0_agreement(reference_f0, _tracks(harvest, heard, workers)),
        "tracker_agreement": f0_agreement(reference_f0, _tracks(dio, originals, workers)),
        "speaker_similarity": float(np.mean(similarity)) if similarity else None,
        "bitrate_bps": round(codec.num_codebooks * math.log2(codec.codebook_size) * codec.frame_rate, 1),
        "encode_realtime": round(seconds / max(encoding, 1e-9), 1),
        "decode_realtime": round(seconds / max(decoding, 1e-9), 1),
        "codec": codec.describe(),
    }
    per_clip = [{"id": clip_id, "text": text, "judge_original": o, "judge_resynthesis": r}
                for (clip_id, _, text), o, r in zip(clips, judged_original, judged_resynthesis)]
    write_json(out / "report.json", {**figures, "clips_heard": per_clip}, indent=1)
    return figures


def _read(path: Path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="float32")[0]


def summary_line(figures: dict) -> str:
    f0 = figures["f0"]

    def number(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    return (f"judge WER {figures['judge_wer_resynthesis']:.3f} on resynthesis vs {figures['judge_wer_original']:.3f} on "
            f"the original ({figures['clips']} clips); F0 median corr {number(f0['median_f0_corr'])}, frame log-F0 corr "
            f"{number(f0['frame_log_f0_corr'])}, V/UV error {number(f0['vuv_error'])}; speaker similarity "
            f"{number(figures['speaker_similarity'])}; {figures['bitrate_bps']:g} bit/s; "
            f"encode {figures['encode_realtime']:g}x, decode {figures['decode_realtime']:g}x real time")
