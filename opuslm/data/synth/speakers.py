"""Synthetic speakers and the prosody presets that define the corpus's proxy labels.

A speaker is an eSpeak accent x voice variant x base pitch/rate/range. The labels follow from the
synthesis parameters, documented here and in data_recipes/espeak/README.md:

- gender: the voice variant (f1..f5 female, m1..m7 male).
- age group: a band of eSpeak pitch (0..99), speaking rate (words/min) and pitch range:
  child: pitch 78..95, rate 165..185, range 65; adult: pitch 40..60, rate 150..170, range 50;
  old: pitch 10..28, rate 115..135, range 30.
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

ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
VARIANTS = {"female": ("f1", "f2", "f3", "f4", "f5"), "male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7")}
WHISPER_VARIANT = {"female": "whisperf", "male": "whisper"}

# (pitch band, rate band, pitch range) per age group.
AGE_PRESETS = {
    "child": ((78, 95), (165, 185), 65),
    "adult": ((40, 60), (150, 170), 50),
    "old": ((10, 28), (115, 135), 30),
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
    "happy": Prosody(pitch_shift=14, pitch_range=90, rate_factor=1.08, volume_factor=1.1),
    "sad": Prosody(pitch_shift=-10, pitch_range=8, rate_factor=0.82, volume_factor=0.7),
    "anger": Prosody(pitch_shift=-4, pitch_range=75, rate_factor=1.15, volume_factor=1.35),
}
STYLE_PRESETS = {
    "normal": Prosody(),
    "fast": Prosody(rate_factor=1.45),
    "slow": Prosody(rate_factor=0.65),
    "whisper": Prosody(),  # the variant changes, see `voice_for`
    "loud": Prosody(volume_factor=1.7),
}

SPEAKERS_PER_GROUP_TRAIN = 4
SPEAKERS_PER_GROUP_TEST = 1


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
