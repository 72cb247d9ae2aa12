"""Synthetic speakers and the prosody presets that define the corpus's proxy labels.

A speaker is an eSpeak accent x voice variant x base pitch/rate/range. The labels follow from the
synthesis parameters, documented here and in data_recipes/espeak/README.md:

- gender: the voice variant (f1..f5 female, m1..m7 male).
- age group: a band of eSpeak pitch (0..99), speaking rate (words/min) and pitch range:
  child: pitch 68..78, rate 160..175, range 60; adult: pitch 40..52, rate 145..160, range 50;
  old: pitch 18..30, rate 125..140, range 35.
- emotion (proxy): a prosody preset applied on top of the speaker (see EMOTIONS).
- speaking style: fast/slow scale the rate, loud raises volume, whisper swaps the variant for eSpeak's
  whisper voice of the same gender (see STYLES).
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

# (pitch band, rate band, pitch range) per age group.
AGE_PRESETS = {
    "child": ((68, 78), (160, 175), 60),
    "adult": ((40, 52), (145, 160), 50),
    "old": ((18, 30), (125, 140), 35),
}


@dataclass(frozen=True)
class Prosody:
    """A change relative to the speaker: pitch shift, range (None keeps the speaker's), rate and volume factors."""

    pitch_shift: int = 0
    pitch_range: int | None = None
    rate_factor: float = 1.0
    volume_factor: float = 1.0


EMOTION_PRESETS = {
    "neutral": Prosody(),
    "happy": Prosody(pitch_shift=8, pitch_range=75, rate_factor=1.05, volume_factor=1.1),
    "sad": Prosody(pitch_shift=-6, pitch_range=15, rate_factor=0.88, volume_factor=0.75),
    "anger": Prosody(pitch_shift=-3, pitch_range=65, rate_factor=1.1, volume_factor=1.3),
}
STYLE_PRESETS = {
    "normal": Prosody(),
    "fast": Prosody(rate_factor=1.2),  # rate 200 doubled Whisper's WER against 160
    "slow": Prosody(rate_factor=0.8),
    "whisper": Prosody(),  # the variant changes, see `voice_for`
    "loud": Prosody(volume_factor=1.5),
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
    pitch_range: int
    split: str  # "train": heard in train (and dev); "test": never heard in train

    def voice_for(self, emotion: str, style: str) -> VoiceSettings:
        variant = WHISPER_VARIANT[self.gender] if style == "whisper" else self.variant
        pitch, rate, pitch_range, volume = self.pitch, float(self.rate), self.pitch_range, 100.0
        for preset in (EMOTION_PRESETS[emotion], STYLE_PRESETS[style]):
            pitch += preset.pitch_shift
            pitch_range = preset.pitch_range if preset.pitch_range is not None else pitch_range
            rate *= preset.rate_factor
            volume *= preset.volume_factor
        return VoiceSettings(
            voice=f"{self.accent}+{variant}",
            rate=int(min(max(rate, 80), 450)),
            pitch=min(max(pitch, 0), 99),
            pitch_range=min(max(pitch_range, 0), 99),
            volume=int(min(volume, 200)),
        )


def roster(seed: int) -> list[Speaker]:
    """Speakers for every (age, gender) group: some heard in train, some held out for test."""
    rng = random.Random(f"speakers-{seed}")
    speakers = []
    per_group = SPEAKERS_PER_GROUP_TRAIN + SPEAKERS_PER_GROUP_TEST
    for age in AGE_GROUPS:
        (pitch_lo, pitch_hi), (rate_lo, rate_hi), pitch_range = AGE_PRESETS[age]
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
                    pitch_range=pitch_range,
                    split="train" if k < SPEAKERS_PER_GROUP_TRAIN else "test",
                ))
    return speakers
