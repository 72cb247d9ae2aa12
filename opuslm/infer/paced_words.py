"""Word-paced TTS decoding: the text's words written into stream 0 where the model says each begins.

A model trained on `tts_paced` (`opuslm.templates`) reads each word's text ids just before the audio
of that word. Decoding writes those ids for it, so every word of the text is spoken, in order, and the
model chooses only the audio and where each word begins:

    after <audio_start>      the first word's first id
    within a word's ids      its next id
    right after a word's ids audio (at least one frame per word)
    after a word's audio     more audio, or the next word's first id; after the last word, more audio
                             or the stop id

`PacedWords.allowed` answers this for the stream-0 ids written so far (joint ids, text and semantic):

    pacing = PacedWords(word_ids(tokenizer, "zoe wanted"), vocab)
    pacing.allowed([])  # -> ([the joint id of "zoe"'s first text id], False, False)
"""

from __future__ import annotations

import numpy as np

from opuslm.errors import OpusLMError


class PacedWords:
    """The pacing of one text: `words` holds each word's text ids (`templates.word_ids`)."""

    def __init__(self, words: list[np.ndarray], vocab):
        self.words = [vocab.text(ids).tolist() for ids in words if len(ids)]
        if not self.words:
            raise OpusLMError("word-paced TTS needs at least one word to speak")
        self.text_start = vocab.text_offset

    def allowed(self, written: list[int]) -> tuple[list[int], bool, bool]:
        """(the text ids, joint, that may come next; whether audio may; whether the stop id may)."""
        word, ids_written, audio_after = -1, 0, 0
        for i in written:
            if i < self.text_start:
                audio_after += 1
            elif word >= 0 and ids_written < len(self.words[word]):
                ids_written, audio_after = ids_written + 1, 0
            else:
                word, ids_written, audio_after = word + 1, 1, 0
        if word < 0:
            return [self.words[0][0]], False, False
        if ids_written < len(self.words[word]):
            return [self.words[word][ids_written]], False, False
        if audio_after == 0:
            return [], True, False
        if word + 1 < len(self.words):
            return [self.words[word + 1][0]], True, False
        return [], True, True
