"""Synthetic speakers and the prosody presets that define the corpus's proxy labels.

A speaker is an eSpeak accent x voice variant x base pitch and rate. The labels follow from the
synthesis parameters, documented here and in data_recipes/espeak/README.md:

- gender: the voice variant (f1..f5 female, m1..m7 male).
- age group: a band of eSpeak base pitch (0..99) and speaking rate (words/min): child: pitch 72..82,
  rate 160..170; adult: pitch 43..53, rate 145..155; old: pitch 14..24, rate 130..140.
- emotion (proxy): a prosody preset on top of the speaker, mainly its intonation range (see EMOTION_PRESETS).
- speaking style: fast/slow scale the rate, loud raises volume, whisper swaps the variant for eSpeak's
  whisper voice of the same gender (see STYLE_PRESETS).

Each label owns its own knob where it can, so the labels stay separable once combined: age the base
pitch, emotion the intonation range (with small pitch and volume moves that cannot cross an age band:
the bands are 19 apart, the shifts at most 10), style the rate and volume (its rate factors carry a
rate past the neighbouring age band). A whispered utterance has no pitch, so there age is heard only
in the rate and emotion only in the volume: those utterances are harder by design, as in life.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from opuslm.data.synth.espeak import VoiceSettings

GENDERS = ("female", "male")
AGE_GROUPS = ("child", "adult", "old")
EMOTIONS = ("neutral", "happy", "sad", "anger")
STYLES = ("normal", "fast", "slow", "whisper", "loud")

# The accent and variants Whisper tiny.en follows best (WER on 24 everyday sentences, en-us, rate 160:
# f2 0.28, f3 0.27, f5 0.32, m1 0.21, m2 0.21, m3 0.21, m5 0.23, m6 0.17, m7 0.19; left out: f1 0.49,
# f4 0.56, m4 0.28; f3 in en 0.33, en-gb-x-rp 0.34, en-us-nyc 0.36; m3 in en-gb-scotland 0.74, en-029 0.61).
# Accent is not a label, so one accent costs no task; voices still differ by variant, pitch and rate.
ACCENTS = ("en-us",)
VARIANTS = {"female": ("f2", "f3", "f5"), "male": ("m1", "m2", "m3", "m5", "m6", "m7")}
WHISPER_VARIANT = {"female": "whisperf", "male": "whisper"}

# (pitch band, rate band) per age group. The intonation range is emotion's knob, not age's.
AGE_PRESETS = {
    "child": ((72, 82), (160, 170)),
    "adult": ((43, 53), (145, 155)),
    "old": ((14, 24), (130, 140)),
}


@dataclass(frozen=True)
class Prosody:
    """A change relative to the speaker: pitch shift, rate and volume factors; an emotion also sets the range."""

    pitch_shift: int = 0
    pitch_range: int | None = None
    rate_factor: float = 1.0
    volume_factor: float = 1.0


# An earlier set (happy pitch +8 range 75 rate x1.05; sad -6/15/x0.88; anger -3/65/x1.1, age bands 10 apart
# with their own ranges) let a classifier on pitch, range, rate and loudness tell age 0.66 and emotion 0.61
# of the time on unseen speakers; these give 0.80 and 0.72, style 0.72 -> 0.86 (data_recipes/espeak/README.md).
EMOTION_PRESETS = {
    "neutral": Prosody(pitch_range=30),
    "happy": Prosody(pitch_shift=6, pitch_range=95),
    "sad": Prosody(pitch_shift=-4, pitch_range=3, volume_factor=0.7),
    "anger": Prosody(pitch_shift=3, pitch_range=60, volume_factor=1.35),
}
STYLE_PRESETS = {
    "normal": Prosody(),
    "fast": Prosody(rate_factor=1.4),
    "slow": Prosody(rate_factor=0.7),
    "whisper": Prosody(),  # the variant changes, see `voice_for`
    "loud": Prosody(volume_factor=1.6),
}

# Many voices per group, so age, emotion and style are learned apart from any one voice.
SPEAKERS_PER_GROUP_TRAIN = 16
SPEAKERS_PER_GROUP_TEST = 2


@dataclass(frozen=True)
class Speaker:
    id: str
    gender: str
    age: str
    accent: str
    variant: str
    pitch: int
    rate: int
    split: str  # "train": heard in train (and dev); "test": never heard in train

    def voice_for(self, emotion: str, style: str) -> VoiceSettings:
        variant = WHISPER_VARIANT[self.gender] if style == "whisper" else self.variant
        mood, manner = EMOTION_PRESETS[emotion], STYLE_PRESETS[style]
        pitch = self.pitch + mood.pitch_shift + manner.pitch_shift
        rate = self.rate * mood.rate_factor * manner.rate_factor
        volume = 100.0 * mood.volume_factor * manner.volume_factor
        return VoiceSettings(
            voice=f"{self.accent}+{variant}",
            rate=int(min(max(rate, 80), 450)),
            pitch=min(max(pitch, 0), 99),
            pitch_range=min(max(mood.pitch_range, 0), 99),
            volume=int(min(volume, 200)),
        )


def roster(seed: int) -> list[Speaker]:
    """Speakers for every (age, gender) group: some heard in train, some held out for test."""
    rng = random.Random(f"speakers-{seed}")
    speakers = []
    per_group = SPEAKERS_PER_GROUP_TRAIN + SPEAKERS_PER_GROUP_TEST
    for age in AGE_GROUPS:
        (pitch_lo, pitch_hi), (rate_lo, rate_hi) = AGE_PRESETS[age]
        for gender in GENDERS:
            for k in range(per_group):
                speakers.append(Speaker(
                    id=f"spk{len(speakers):02d}",
                    gender=gender,
                    age=age,
                    accent=rng.choice(ACCENTS),
                    variant=rng.choice(VARIANTS[gender]),
                    pitch=rng.randint(pitch_lo, pitch_hi),
                    rate=rng.randint(rate_lo, rate_hi),
                    split="train" if k < SPEAKERS_PER_GROUP_TRAIN else "test",
                ))
    return speakers
