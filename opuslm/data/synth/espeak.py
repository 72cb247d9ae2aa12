"""libespeak-ng through ctypes, from the espeakng-loader wheel (no system package needed).

Synthesis is synchronous: `espeak_Synth` calls our callback with int16 samples and events until the
utterance ends. Word events carry the sample offset where each word starts.

Why the library is loaded afresh for every utterance: libespeak-ng keeps static waveform-generator
state (oscillator phase, flutter position) that survives `espeak_Terminate` and `espeak_Initialize`,
so the same text sounds slightly different depending on what the process said before. Unloading and
reloading the library (about 3 ms) makes each utterance depend only on its own text and settings,
which byte-identical corpora need whatever the number of worker processes.
"""

from __future__ import annotations

import _ctypes
import ctypes
from dataclasses import dataclass

import numpy as np

from opuslm.errors import OpusLMError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset of the word
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample offset from the start of the utterance
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class VoiceSettings:
    """One way of speaking: an eSpeak voice name ('en-us+f3') and its prosody parameters."""

    voice: str
    rate: int  # words per minute, 80..450
    pitch: int  # 0..99, 50 is the variant's own base pitch
    pitch_range: int  # 0..99, intonation range
    volume: int  # 0..200, 100 is normal


@dataclass(frozen=True)
class WordStart:
    char_offset: int  # 0-based offset of the word in the synthesised text
    sample: int


@dataclass(frozen=True)
class Synthesis:
    samples: np.ndarray  # int16, mono
    sample_rate: int
    word_starts: list[WordStart]


class _Session:
    """One load of the library, for one utterance."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:  # pragma: no cover - it is a hard dependency
            raise OpusLMError("espeakng-loader is not installed; run `pip install espeakng-loader`") from error
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        data_path = espeakng_loader.get_data_path()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sample_rate <= 0:
            self.close()
            raise OpusLMError(f"libespeak-ng failed to initialise with data at {data_path}")
        self.chunks: list[np.ndarray] = []
        self.words: list[WordStart] = []
        self.callback = _Callback(self._on_audio)  # kept on self: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD:
                self.words.append(WordStart(events[i].text_position - 1, events[i].sample))
            i += 1
        return 0

    def close(self) -> None:
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)


_LIBC = ctypes.CDLL(None)


def synthesize(text: str, settings: VoiceSettings) -> Synthesis:
    """Speak `text` with `settings`; the result depends on nothing else (see the module docstring)."""
    session = _Session()
    try:
        if session.lib.espeak_SetVoiceByName(settings.voice.encode()) != 0:
            raise OpusLMError(f"eSpeak NG has no voice {settings.voice!r}; use names like 'en-us+f3'")
        for param, value in (
            (_PARAM_RATE, settings.rate),
            (_PARAM_PITCH, settings.pitch),
            (_PARAM_RANGE, settings.pitch_range),
            (_PARAM_VOLUME, settings.volume),
        ):
            session.lib.espeak_SetParameter(param, int(value), 0)
        # eSpeak's noise sources (breath, whisper) draw from its own seed and from libc's rand().
        session.lib.espeak_ng_SetRandSeed(0)
        _LIBC.srand(0)
        encoded = text.encode("utf-8")
        status = session.lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise OpusLMError(f"eSpeak NG failed (status {status}) on text {text!r}")
        samples = np.concatenate(session.chunks) if session.chunks else np.zeros(0, np.int16)
        return Synthesis(samples, session.sample_rate, list(session.words))
    finally:
        session.close()
