"""Acoustic tokenizer candidates side by side: the codec report of each on the same clips.

Fits, on one synthetic corpus (the demo's 2 h, seed 0, by default), each candidate at 8 x 256 ids per
25 Hz frame and prints one table of the codec report (`opuslm/eval/codec_report.py`) over the same
test clips, with the same judge (the embedded Whisper tiny.en):

- the mel-pitch codec (the demo's): a pitch codebook + 7 residual k-means log-mel codebooks, decoded by
  its harmonic-plus-noise synthesiser;
- the same codec on HiFi-GAN's own log-mel, decoded by HiFi-GAN V1's universal generator (`opuslm assets
  import hifigan-universal`; left out, with a line saying so, where the `hifigan` extra is not installed);
- 8 residual k-means log-mel codebooks decoded by Griffin-Lim (librosa, 32 iterations), no pitch;
- the small neural codec trained for --codec-steps (400: the demo's recipe before the mel-pitch codec).

    python bench/acoustic_tokenizers.py [--hours 2] [--clips 60] [--codec-steps 400]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np


class GriffinLimMel:
    """8 mel codebooks of a mel-pitch fit without its pitch codebook, decoded by Griffin-Lim."""

    def __init__(self, folder: Path):
        from opuslm.tokenize.mel_pitch import MelPitchCodec

        self.codec = MelPitchCodec.load(folder)
        c = self.codec.config
        self.sample_rate, self.frame_rate = c.sample_rate, c.frame_rate
        self.num_codebooks, self.codebook_size = c.num_codebooks - 1, c.codebook_size

    def describe(self) -> dict:
        return {"backend": "mel residual k-means + Griffin-Lim", "num_codebooks": self.num_codebooks}

    def encode(self, wav, sample_rate):
        return self.codec.encode(wav)[1:]

    def decode(self, codes):
        import librosa

        c = self.codec.config
        log_mel = sum(book[index] for book, index in zip(self.codec.mel_codebooks, codes))
        power = np.exp(np.asarray(log_mel).reshape(-1, c.n_mels)).T
        magnitude = librosa.feature.inverse.mel_to_stft(power, sr=c.sample_rate, n_fft=c.n_fft, power=2.0, fmin=0.0,
                                                        fmax=c.sample_rate / 2)
        return librosa.griffinlim(magnitude, n_iter=32, hop_length=c.sub_hop, win_length=c.window, n_fft=c.n_fft,
                                  random_state=0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0, help="synthetic corpus (seed 0) to fit and measure on")
    parser.add_argument("--clips", type=int, default=60, help="test clips in the report")
    parser.add_argument("--fit-utterances", type=int, default=400, help="train utterances the candidates fit on")
    parser.add_argument("--codec-steps", type=int, default=400, help="training steps of the small neural codec")
    args = parser.parse_args()

    from opuslm.data.manifest import read_manifest
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus
    from opuslm.errors import OpusLMError
    from opuslm.pretrained import import_asset
    from opuslm.eval.judge import WhisperJudge
    from opuslm.tokenize.acoustic import load_acoustic_tokenizer
    from opuslm.eval.codec_report import codec_report
    from opuslm.tokenize.codec_training import train_small_codec
    from opuslm.tokenize.mel_pitch import MelPitchConfig, fit_mel_pitch_codec

    work = Path(tempfile.mkdtemp(prefix="opuslm-bench-"))
    corpus = work / "corpus"
    synthesize_corpus(corpus, SynthConfig(hours=args.hours, seed=0), workers=2, progress=False)
    train = [u.load_audio(corpus, target_rate=16000)[0] for u in read_manifest(corpus, split="train")[: args.fit_utterances]]
    clips = [(u.id, u.load_audio(corpus, target_rate=16000)[0], u.text) for u in read_manifest(corpus, split="test")[: args.clips]]
    fit_mel_pitch_codec(train, work / "mel_pitch", progress=False)
    try:
        vocoder = import_asset("hifigan-universal", work / "hifigan")
    except OpusLMError as missing:
        print(f"left out the HiFi-GAN decoder: {missing}")
        vocoder = None
    if vocoder:
        fit_mel_pitch_codec(train, work / "mel_hifigan", progress=False, vocoder=vocoder)
    fit_mel_pitch_codec(train, work / "mel_only", MelPitchConfig(num_codebooks=9), progress=False)
    train_small_codec(train, work / "neural", steps=args.codec_steps, progress=False)
    candidates = {"mel-pitch codec (the demo's)": load_acoustic_tokenizer(work / "mel_pitch"),
                  **({"mel-pitch codec, HiFi-GAN decoder": load_acoustic_tokenizer(work / "mel_hifigan")} if vocoder else {}),
                  "mel RVQ x 8 + Griffin-Lim": GriffinLimMel(work / "mel_only"),
                  f"small neural codec, {args.codec_steps} steps": load_acoustic_tokenizer(work / "neural")}
    judge = WhisperJudge()
    rows = []
    for name, codec in candidates.items():
        figures = codec_report(codec, clips, judge, work / "reports" / re.sub(r"\W+", "-", name).strip("-"))
        rows.append((name, figures))
    print(f"{len(clips)} test clips of a {args.hours} h corpus; judge {judge.info['path']}; original audio: "
          f"judge WER {rows[0][1]['judge_wer_original']:.3f}")
    print("| candidate | judge WER | median-F0 corr | frame log-F0 corr | V/UV error | speaker sim | encode x | decode x |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, f in rows:
        f0 = f["f0"]
        print(f"| {name} | {f['judge_wer_resynthesis']:.3f} | {f0['median_f0_corr']:.3f} | {f0['frame_log_f0_corr']:.3f} | "
              f"{f0['vuv_error']:.3f} | {f['speaker_similarity']:.3f} | {f['encode_realtime']:g} | {f['decode_realtime']:g} |")
    agreement = rows[0][1]["tracker_agreement"]
    print(f"dio vs harvest on the original audio (the bound on the F0 figures): median {agreement['median_f0_corr']:.3f}, "
          f"frame {agreement['frame_log_f0_corr']:.3f}, V/UV {agreement['vuv_error']:.3f}")


if __name__ == "__main__":
    main()
