"""How decoding chooses ids: the one place its defaults are written (the CLI reads them here). Audio is
sampled; text is greedy, or a beam search when `beam` > 1 (`opuslm.infer.beam`); ASR transcripts may be
scored jointly with the CTC posteriors of their audio (`ctc_weight` > 0, `opuslm.infer.ctc_prefix`). Timestamp tasks (SRWT)
are written after ASR by default: the model's own transcript, with only the times chosen
(`opuslm.infer.timed_words`); "aligned" places the same transcript's words by a word aligner
(`opuslm.infer.word_aligner`); "free" writes words and times in one pass, as the task was trained."""

from __future__ import annotations

from dataclasses import dataclass

from opuslm.errors import OpusLMError

TIMESTAMP_DECODINGS = ("after-asr", "aligned", "free")
CTC_LAYERS = ("adapter", "output")  # whose CTC posteriors score transcripts (`opuslm.infer.ctc_prefix`)


@dataclass
class Sampling:
    temperature: float = 0.8  # OpusLM's audio defaults
    top_k: int = 30  # 0: off
    top_p: float = 1.0  # 1: off
    greedy_audio: bool = False
    seed: int = 0
    beam: int = 1  # text targets: the beam width (1: greedy)
    guard: bool = False  # text targets: decode within the task's format (`opuslm.infer.task_format`)
    timestamps: str = "after-asr"  # timestamp targets: "after-asr", "aligned" or "free"
    aligner: str | None = None  # the word aligner's folder, which "aligned" needs
    ctc_weight: float = 0.0  # ASR: the CTC prefix score's weight in joint decoding (0: off)
    ctc_layer: str = "adapter"  # ASR: whose CTC posteriors, the continuous input path's adapter or the output

    @property
    def joint_ctc(self):
        """The joint CTC decoding of transcripts these settings ask for, or None."""
        from opuslm.infer.ctc_prefix import JointCTC

        return JointCTC(self.ctc_weight, self.ctc_layer) if self.ctc_weight else None

    def __post_init__(self):
        if self.beam < 1:
            raise OpusLMError(f"the beam width (--beam) must be at least 1, got {self.beam}")
        if self.timestamps not in TIMESTAMP_DECODINGS:
            raise OpusLMError(f"--timestamps must be one of {', '.join(TIMESTAMP_DECODINGS)}, got {self.timestamps!r}")
        if (self.timestamps == "aligned") != (self.aligner is not None):
            raise OpusLMError("--timestamps aligned places words with a word aligner, and --aligner DIR names it: give "
                              f"both or neither (got --timestamps {self.timestamps}, --aligner {self.aligner})")
        if self.ctc_weight:
            self.joint_ctc  # JointCTC refuses a weight outside (0, 1] and an unknown layer


def add_joint_ctc_options(parser) -> None:
    """`--ctc-weight` and `--ctc-layer`, as `opuslm generate` and `opuslm eval` take them."""
    parser.add_argument("--ctc-weight", type=float, default=Sampling.ctc_weight,
                        help="ASR: decode jointly with the CTC posteriors of the audio (ESPnet's hybrid decoding), this "
                        "weight on the CTC prefix score and 1 minus it on the model's own (0: off, the default; 0.3 is "
                        "ESPnet's usual); it keeps a briefly trained model from writing a sentence it has read instead "
                        "of the one it hears. Needs a model trained with data.ctc_weight > 0 on --ctc-layer")
    parser.add_argument("--ctc-layer", choices=CTC_LAYERS, default=Sampling.ctc_layer,
                        help="ASR with --ctc-weight: whose CTC posteriors, the continuous input path's adapter (a "
                        "heard_ctc stage, or data.ctc_layer adapter) or the decoder's states at the audio "
                        "(data.ctc_layer output)")


def add_timestamp_options(parser) -> None:
    """`--timestamps` and `--aligner`, as `opuslm generate` and `opuslm eval` take them."""
    parser.add_argument("--timestamps", choices=TIMESTAMP_DECODINGS, default=Sampling.timestamps,
                        help="SRWT: 'after-asr' transcribes first and writes that transcript with the times the model "
                        "chooses (well formed by construction; the default); 'aligned' places that transcript's words "
                        "with a word aligner trained on a corpus's word times (--aligner); 'free' writes words and "
                        "times in one pass, as the task was trained")
    parser.add_argument("--aligner", help="with --timestamps aligned: the word aligner's folder (`opuslm tokenizers "
                        "train-aligner`; the demo trains demo_out/tokenizers/aligner)")
