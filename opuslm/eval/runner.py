"""`opuslm eval`: every task of a trained model on a corpus split, written as results, hypotheses, a
report and plots.

ASR (per split: dev = seen speakers, test = unseen), TTS scored by a judge (with the codec's
resynthesis ceiling and the original audio through the same judge), OSUM's classification tasks
(first-tag accuracy and confusion matrices), SRWT (word WER and AAS), STTC (answer exact match), and
text (perplexity on held-out text, multiple-choice accuracy), and the text's factual questions asked
aloud (spoken_qa: the modality gap). Text is decoded greedily (or as the sampling says: a beam, and
for ASR joint CTC decoding, recorded in results.json); TTS audio is sampled with a fixed seed, so a
re-run gives the same numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from opuslm.audio import resample, write_wav
from opuslm.data.manifest import read_manifest
from opuslm.errors import OpusLMError
from opuslm.eval import metrics
from opuslm.infer.outputs import TaskOutput, read_output
from opuslm.json_files import json_text, write_json
from opuslm.tasks import BUILTIN_TASKS, DECLARED_SCORES, TaskSpec, TaskTable, trained_labels
from opuslm.templates import TARGET_WRITERS, TemplateError, label_values

# OSUM's ASR + X tasks, scored by the label they name; each with its tag-only variant `<task>_label`
CLASSIFICATION = {name: spec.labels[0] for name, spec in BUILTIN_TASKS.items()
                  if spec.target == "transcript+labels" and spec.score == "first_tag"}
EVAL_TASKS = ("asr", *CLASSIFICATION, "srwt", "sttc", "tts", "continuation", "text", "spoken_qa")  # what `run` can score, in its order


def check_eval_tasks(tasks: list[str], table: TaskTable | None = None) -> None:
    """Refuse a task `run` cannot score; `table`: the model's tasks, whose declared ones it scores too."""
    declared = [name for name, spec in (table.declared if table else {}).items() if spec.score is not None]
    unknown = sorted(set(tasks) - set(EVAL_TASKS) - set(declared))
    if unknown:
        known = ", ".join([*EVAL_TASKS, *declared])
        raise OpusLMError(f"unknown eval task(s) {', '.join(unknown)}; tasks: {known} (a declared task is scored "
                          f"when it names a score: {', '.join(DECLARED_SCORES)})")


def target_text(spec: TaskSpec, utterance) -> str | None:
    """What a task's answer for `utterance` is, or None when the utterance lacks what the task reads."""
    meta = {"id": utterance.id, "text": utterance.text, "labels": utterance.labels, "words": utterance.words,
            "answer": utterance.answer}
    try:
        return TARGET_WRITERS[spec.target](meta, spec)
    except TemplateError:
        return None


def malformed_outputs(hyps: list[dict], commonest: int = 3) -> dict:
    """Per task read by its format (`opuslm.infer.outputs`): how many outputs are malformed, of how
    many, and the commonest problems with their counts."""
    from collections import Counter

    out = {}
    for task in dict.fromkeys(row["task"] for row in hyps if "malformed" in row):
        rows = [row for row in hyps if row["task"] == task and "malformed" in row]
        bad = sum(row["malformed"] for row in rows)
        problems = Counter(problem for row in rows for problem in row["problems"])
        out[task] = {"malformed": bad, "outputs": len(rows), "share": bad / len(rows),
                     "problems": dict(problems.most_common(commonest))}
    return out


def facts_by_category(hyps: list[dict]) -> dict:
    """The factual questions answered in text (`text_qa`) and aloud (`spoken_qa`), per category: how many
    were asked both ways and the share right in text, aloud and in both. Empty unless both were asked."""
    text = {row["id"]: row for row in hyps if row["task"] == "text_qa"}
    aloud = {row["id"]: row for row in hyps if row["task"] == "spoken_qa"}
    out: dict[str, dict] = {}
    for key in [key for key in aloud if key in text]:
        counts = out.setdefault(text[key]["category"], {"questions": 0, "text": 0.0, "aloud": 0.0, "both": 0.0})
        counts["questions"] += 1
        counts["text"] += text[key]["score"]
        counts["aloud"] += aloud[key]["score"]
        counts["both"] += text[key]["score"] * aloud[key]["score"]
    return {category: {"questions": c["questions"], **{k: c[k] / c["questions"] for k in ("text", "aloud", "both")}}
            for category, c in out.items()}


def prompt_similarities(speakers: list[str], prompts: list, generated: list, same_speaker: list) -> dict:
    """Speaker similarity (`opuslm/eval/speaker.py`) of generated speech to its prompt, beside the two
    references that say what a number means on this corpus: speech of the prompt's own speaker
    (`same_speaker`) and the same kind of speech by a different speaker (the next item by someone else).
    A prompt of None is left out. Returns {"generated", "same_speaker", "different_speaker"} means."""
    from opuslm.eval.speaker import SpeakerEncoder

    encoder = SpeakerEncoder()
    embed = lambda wavs: [encoder.embed(w) if w is not None else None for w in wavs]  # noqa: E731
    prompt_vectors, generated_vectors, same_vectors = embed(prompts), embed(generated), embed(same_speaker)
    same, different, spoken = [], [], []
    for i, speaker in enumerate(speakers):
        if prompt_vectors[i] is None:
            continue
        others = [j for j in range(i + 1, len(speakers)) if speakers[j] != speaker] + \
                 [j for j in range(i) if speakers[j] != speaker]
        spoken.append(float(generated_vectors[i] @ prompt_vectors[i]))
        same.append(float(same_vectors[i] @ prompt_vectors[i]))
        if others:
            different.append(float(same_vectors[others[0]] @ prompt_vectors[i]))
    mean = lambda values: float(np.mean(values)) if values else None  # noqa: E731
    return {"generated": mean(spoken), "same_speaker": mean(same), "different_speaker": mean(different)}


def speaker_similarities(utts, prompts, generated, originals, resynthesised) -> dict:
    """TTS: the generated speech against its prompt (another utterance of the speaker), the references
    being the original of the same sentence and a different speaker's original; and the codec's
    resynthesis against its original."""
    from opuslm.eval.speaker import SpeakerEncoder

    tts = prompt_similarities([u.speaker for u in utts], [p[0] if p is not None else None for p in prompts],
                              generated, originals)
    encoder = SpeakerEncoder()
    resynthesis = [float(encoder.embed(a) @ encoder.embed(b)) for a, b in zip(resynthesised, originals)]
    return {"tts_speaker_sim": tts["generated"], "tts_speaker_sim_same_speaker": tts["same_speaker"],
            "tts_speaker_sim_different_speaker": tts["different_speaker"],
            "resynthesis_speaker_sim": float(np.mean(resynthesis)) if resynthesis else None}


def asr_decoding(sampling) -> dict:
    """How ASR transcripts were decoded: the beam width and joint CTC decoding's weight and layer."""
    joint = getattr(sampling, "joint_ctc", None)
    return {"beam": getattr(sampling, "beam", 1), "ctc_weight": joint.weight if joint else 0.0,
            "ctc_layer": joint.layer if joint else None}


class Evaluation:
    SAMPLES = 5  # TTS samples written under samples/ (and twice as many ASR rows) for the report

    def __init__(self, model_folder: Path, corpus: Path, out: Path, judge=None, codec=None, batch_size: int = 8,
                 limit: int | None = None, progress: bool = True, lm=None, sampling=None):
        """`sampling`: how the model decodes (`opuslm.infer.sampling.Sampling`; default: its defaults, seed 0)."""
        from opuslm.infer.sampling import Sampling
        from opuslm.infer.speech_lm import SpeechLM

        self.lm = lm or SpeechLM.load(model_folder, codec, sampling=sampling or Sampling(seed=0))
        self.model_folder, self.corpus, self.out = Path(model_folder), Path(corpus), Path(out)
        self.judge, self.batch_size, self.limit, self.progress = judge, batch_size, limit, progress
        self.hyps: list[dict] = []
        self.results: dict = {}
        self.samples: dict[str, list[dict]] = {}
        self.taught: dict[str, tuple[set[str], str]] = {}  # per task, `_labels_taught`

    def _utterances(self, split: str, where=None):
        chosen = [u for u in read_manifest(self.corpus, split=split) if where is None or where(u)]
        return chosen[: self.limit] if self.limit else chosen

    def _audio(self, utterances):
        return [u.load_audio(self.corpus, target_rate=16000) for u in utterances]

    def _batched(self, fn, items, desc: str):
        from opuslm.progress import progress_bar

        out = []
        for start in progress_bar(range(0, len(items), self.batch_size), desc=desc, unit="batch", disable=not self.progress):
            out += fn(items[start:start + self.batch_size])
        return out

    def _record(self, task: str, utterance, reference: str, hypothesis: str, score, output: TaskOutput | None = None) -> None:
        row = {"id": utterance.id, "task": task, "split": utterance.split, "reference": reference,
               "hypothesis": hypothesis, "score": score}
        if output is not None:
            row |= {"malformed": output.malformed, "problems": output.problems}
        self.hyps.append(row)

    def _labels_taught(self, spec: TaskSpec) -> tuple[set[str], str]:
        """The labels the model was taught to write for `spec` (its folder's record, else the corpus's
        train split's), and which of the two they come from."""
        if spec.name not in self.taught:
            recorded = trained_labels(self.model_folder).get(spec.name)
            if recorded is not None:
                self.taught[spec.name] = set(recorded), "the model's training data"
            else:
                taught = set()
                for u in read_manifest(self.corpus, split="train"):
                    try:
                        taught.update(label_values({"id": u.id, "labels": u.labels}, tuple(spec.labels)))
                    except TemplateError:
                        pass
                self.taught[spec.name] = taught, "the corpus's train split"
        return self.taught[spec.name]

    def _read(self, spec: TaskSpec, reference: str, hypothesis: str, utterance=None) -> TaskOutput:
        """The hypothesis read as the task's format: as many labels as the reference holds, from those the
        model was taught; timestamps within the clip."""
        known = self._labels_taught(spec)[0] if spec.labels else None
        clip = utterance.duration if utterance is not None and spec.target == "timestamps" else None
        return read_output(spec.target, hypothesis, len(metrics.TAG.findall(reference)), known, clip)

    # ---- tasks ----
    def asr(self, split: str) -> None:
        utts = self._utterances(split)
        hyps = self._batched(lambda a: self.lm.transcribe(a), self._audio(utts), f"asr {split}")
        for u, h in zip(utts, hyps):
            errors, words = metrics.word_errors(u.text, h)
            self._record("asr", u, u.text, h, errors / max(words, 1), self._read(BUILTIN_TASKS["asr"], u.text, h))
        self.results[f"asr_wer_{split}"] = metrics.corpus_wer([u.text for u in utts], hyps)
        if split == "test":
            self.samples["asr"] = [{"id": u.id, "reference": u.text, "hypothesis": h, "labels": u.labels}
                                   for u, h in list(zip(utts, hyps))[:2 * self.SAMPLES]]

    def classification(self, task: str, split: str) -> None:
        """Both prompts OSUM trains: ASR + tag (`sgc`: the tag follows the model's own transcript) and
        tag only (`sgc_label`), so a weak transcript is not mistaken for a deaf classifier."""
        key = CLASSIFICATION[task]
        utts = self._utterances(split, lambda u: key in u.labels)
        audio = self._audio(utts)
        references = [str(u.labels[key]).lower() for u in utts]
        for variant, reference in ((task, lambda u, r: f"{u.text}<{r}>"), (f"{task}_label", lambda u, r: f"<{r}>")):
            hyps = self._batched(lambda a: self.lm.understand(variant, a), audio, variant)
            predicted = [metrics.first_tag(h) for h in hyps]
            for u, h, p, r in zip(utts, hyps, predicted, references):
                self._record(variant, u, reference(u, r), h, float(p == r),
                             self._read(BUILTIN_TASKS[variant], reference(u, r), h))
            correct = [p == r for p, r in zip(predicted, references)]
            self.results[f"{variant}_accuracy"] = float(np.mean(correct)) if utts else None
            self.results.setdefault("confusion", {})[variant] = metrics.confusion(references, predicted)

    def srwt(self, split: str) -> None:
        from opuslm.templates import word_timestamps

        utts = self._utterances(split, lambda u: bool(u.words))
        hyps = self._batched(lambda a: self.lm.understand("srwt", a), self._audio(utts), "srwt")
        refs = [word_timestamps({"words": u.words}) for u in utts]
        shifts = []
        for u, r, h in zip(utts, refs, hyps):
            mine = metrics.boundary_shifts(r, h)
            shifts += mine
            self._record("srwt", u, r, h, float(np.mean(mine) * 1000) if mine else None,
                         self._read(BUILTIN_TASKS["srwt"], r, h, u))
        plain = lambda text: " ".join(w for w, _, _ in metrics.timed_words(text))  # noqa: E731
        self.results["srwt_wer"] = metrics.corpus_wer([plain(r) for r in refs], [plain(h) for h in hyps])
        self.results["srwt_aas_ms"] = float(np.mean(shifts) * 1000) if shifts else None

    def sttc(self, split: str) -> None:
        utts = self._utterances(split, lambda u: bool(u.answer))
        hyps = self._batched(lambda a: self.lm.understand("sttc", a), self._audio(utts), "sttc")
        correct = [metrics.answer_of(h) == metrics.normalise(u.answer) for u, h in zip(utts, hyps)]
        for u, h, c in zip(utts, hyps, correct):
            reference = f"{u.text}<answer>{u.answer}"
            self._record("sttc", u, reference, h, float(c), self._read(BUILTIN_TASKS["sttc"], reference, h))
        self.results["sttc_accuracy"] = float(np.mean(correct)) if utts else None

    def declared(self, spec: TaskSpec, split: str) -> None:
        """A task the model was fine-tuned on, scored as its declaration says: first-tag accuracy (beside
        the majority label's share, with a confusion matrix, and the reference labels its training data
        never held listed as unseen: the model folder's record, else the corpus's train split), normalised
        exact match, or WER."""
        utts = self._utterances(split, lambda u: target_text(spec, u) is not None)
        references = [target_text(spec, u) for u in utts]
        hyps = self._batched(lambda a: self.lm.understand(spec.name, a), self._audio(utts), spec.name)
        report = {"score": spec.score, "utterances": len(utts)}
        if spec.score == "first_tag":
            truth, predicted = [metrics.first_tag(r) for r in references], [metrics.first_tag(h) for h in hyps]
            scores = [float(p == t) for p, t in zip(predicted, truth)]
            seen, report["seen_in"] = self._labels_taught(spec)
            counts = {label: truth.count(label) for label in set(truth)}
            report.update(majority=max(counts.values()) / len(truth) if truth else None,
                          unseen_labels=sorted(set(truth) - seen))
            self.results.setdefault("confusion", {})[spec.name] = metrics.confusion(truth, predicted)
        elif spec.score == "exact":
            scores = [float(metrics.normalise(h) == metrics.normalise(r)) for r, h in zip(references, hyps)]
        else:
            scores = [e / max(w, 1) for e, w in (metrics.word_errors(r, h) for r, h in zip(references, hyps))]
        for u, r, h, score in zip(utts, references, hyps, scores):
            self._record(spec.name, u, r, h, score, self._read(spec, r, h, u))
        value = metrics.corpus_wer(references, hyps) if spec.score == "wer" else (float(np.mean(scores)) if utts else None)
        self.results[f"{spec.name}_{'wer' if spec.score == 'wer' else 'accuracy'}"] = value
        self.results.setdefault("declared", {})[spec.name] = {**report, "value": value}

    def tts(self, split: str) -> None:
        """Speak each test sentence in its speaker's voice (a prompt from another utterance of the same
        speaker), transcribe with the judge; the same judge on the codec's resynthesis and the original."""
        if self.judge is None:
            self.results["tts_note"] = "no judge given: TTS not scored"
            return
        utts = self._utterances(split)
        by_speaker: dict[str, list] = {}
        for u in read_manifest(self.corpus, split=split):
            by_speaker.setdefault(u.speaker, []).append(u)
        prompts = []
        for u in utts:
            others = [o for o in by_speaker[u.speaker] if o.id != u.id]
            prompts.append(others[0].load_audio(self.corpus, target_rate=16000) if others else None)
        items = list(zip([u.text for u in utts], prompts))
        wavs = self._batched(lambda b: self.lm.synthesize([t for t, _ in b], [p for _, p in b]), items, "tts")
        rate = self.lm.tokenizers.acoustic.sample_rate
        heard = [resample(w, rate, 16000) if len(w) else np.zeros(1600, np.float32) for w in wavs]  # judge and speaker encoder
        generated = self.judge.transcribe(heard)
        originals = self._audio(utts)
        codec = self.lm.tokenizers.acoustic
        resynthesised = [resample(codec.decode(codec.encode(resample(w, 16000, rate), rate)), rate, 16000)
                         for w, _ in originals]
        judged_original = self.judge.transcribe([w for w, _ in originals])
        judged_resynthesis = self.judge.transcribe(resynthesised)
        refs = [u.text for u in utts]
        self._tts_teacher_forced(utts, originals, prompts, refs)
        self.results.update(speaker_similarities(utts, prompts, heard, [w for w, _ in originals], resynthesised))
        for u, h in zip(utts, generated):
            errors, words = metrics.word_errors(u.text, h)
            self._record("tts", u, u.text, h, errors / max(words, 1))
        lengths = metrics.length_outcomes([len(w) / rate for w in wavs], [len(w) / 16000 for w, _ in originals],
                                          [float(np.sqrt(np.mean(np.square(w)))) if len(w) else 0.0 for w in wavs])
        self.results.update(
            tts_wer=metrics.corpus_wer(refs, generated), tts_wer_mean_utterance=metrics.mean_utterance_wer(refs, generated),
            tts_ceiling_resynthesis_wer=metrics.corpus_wer(refs, judged_resynthesis),
            tts_judge_original_wer=metrics.corpus_wer(refs, judged_original),
            tts_seconds_generated=float(sum(len(w) for w in wavs) / rate), **lengths)
        normal = [i for i, u in enumerate(utts) if u.labels.get("style") == "normal"]
        if normal:  # the plainest speech: whether the corpus can be heard at all
            self.results["tts_judge_original_wer_normal"] = metrics.corpus_wer(
                [refs[i] for i in normal], [judged_original[i] for i in normal])
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        listed = []
        for i, (u, w) in enumerate(list(zip(utts, wavs))[:self.SAMPLES]):
            write_wav(folder / f"tts-{u.id}.wav", w, rate)
            write_wav(folder / f"original-{u.id}.wav", originals[i][0], 16000)
            write_wav(folder / f"resynthesis-{u.id}.wav", resynthesised[i], 16000)
            if prompts[i] is not None:
                write_wav(folder / f"prompt-{u.id}.wav", prompts[i][0], 16000)
            listed.append({"id": u.id, "text": u.text, "generated": f"samples/tts-{u.id}.wav",
                           "original": f"samples/original-{u.id}.wav", "resynthesis": f"samples/resynthesis-{u.id}.wav",
                           "judge_resynthesis": judged_resynthesis[i],
                           "prompt": f"samples/prompt-{u.id}.wav" if prompts[i] is not None else None,
                           "judge_generated": generated[i], "judge_original": judged_original[i]})
        self.samples["tts"] = listed

    def _tts_teacher_forced(self, utts, originals, prompts, refs: list[str]) -> None:
        """TTS with every earlier frame of the original given (`SpeechLM.speak_teacher_forced`): the judge's
        WER on what that decodes to, and per stream the share of the original's ids the model chose."""
        if self.lm.paced_tts and any(not u.words for u in utts):
            self.results["tts_teacher_forced_note"] = ("not scored: the model speaks word-paced and teacher-forcing "
                                                       "it needs word times, which this corpus's test utterances lack")
            return
        items = [((u.text, audio), prompt, u.words) for u, audio, prompt in zip(utts, originals, prompts)]
        forced = self._batched(lambda b: self.lm.speak_teacher_forced([r for r, _, _ in b], [p for _, p, _ in b],
                                                                      word_times=[w for _, _, w in b]),
                               items, "tts, teacher-forced")
        rate = self.lm.tokenizers.acoustic.sample_rate
        heard = self.judge.transcribe([resample(w, rate, 16000) if len(w) else np.zeros(1600, np.float32) for w, _ in forced])
        right = np.concatenate([r for _, r in forced], 1) if forced else np.zeros((self.lm.vocab.num_streams, 0))
        names = ["semantic", *(f"codebook_{k}" for k in range(self.lm.vocab.num_codebooks))]
        self.results["tts_teacher_forced_wer"] = metrics.corpus_wer(refs, heard)
        self.results["tts_teacher_forced_accuracy"] = {name: float(row.mean()) if row.size else None
                                                       for name, row in zip(names, right)}

    def continuation(self, split: str) -> None:
        """Audio continuation keeps the voice: the first half of each utterance is the prompt, continued for
        as long again; the continuation's speaker similarity to the prompt, beside the utterance's own
        second half (the same speaker) and a different speaker's second half."""
        utts = self._utterances(split)
        audio = [w for w, _ in self._audio(utts)]
        halves = [len(w) // 2 for w in audio]
        prompts = [(w[:half], 16000) for w, half in zip(audio, halves)]
        seconds = float(np.mean(halves)) / 16000 if halves else 0.0
        wavs = self._batched(lambda b: self.lm.continue_audio(b, max_seconds=seconds), prompts, "continuation")
        rate = self.lm.tokenizers.acoustic.sample_rate
        continued = [resample(w, rate, 16000) if len(w) else np.zeros(1600, np.float32) for w in wavs]
        similar = prompt_similarities([u.speaker for u in utts], [p for p, _ in prompts], continued,
                                      [w[half:] for w, half in zip(audio, halves)])
        self.results.update({f"continuation_speaker_sim{'' if key == 'generated' else '_' + key}": value
                             for key, value in similar.items()})
        self.results["continuation_seconds_mean"] = float(np.mean([len(w) / rate for w in wavs])) if wavs else None

    def text(self, split: str, base_llm: Path | None) -> None:
        """The corpus's own text (its transcripts, its facts in words) and general English (eval/text.py),
        by the model's text path and, with `base_llm`, by the LLM it grew from."""
        from opuslm.eval.text import QUESTION_PROMPT, TextScorer, english_sentences, factual_questions, multiple_choice_set

        utts = self._utterances(split)
        texts = [u.text for u in utts] + [u.answer for u in utts if u.answer]
        scorers = {"": TextScorer(self.lm.model, self.lm.tokenizers.text)}
        if base_llm is not None:
            from transformers import AutoModelForCausalLM

            llm = AutoModelForCausalLM.from_pretrained(str(base_llm), local_files_only=True).eval()
            scorers["_base_llm"] = TextScorer(llm, self.lm.tokenizers.text)
        corpus_items, english = multiple_choice_set(), english_sentences()
        questions = factual_questions()
        facts = [(QUESTION_PROMPT.format(question), options, answer) for question, options, answer in questions]
        self.results["facts_questions"] = len(facts)
        for suffix, scorer in scorers.items():
            self.results[f"text_perplexity{suffix}"] = scorer.perplexity(texts)
            self.results[f"text_mc_accuracy{suffix}"], _ = scorer.multiple_choice(corpus_items)
            self.results[f"english_perplexity{suffix}"] = scorer.perplexity(english)
            self.results[f"facts_accuracy{suffix}"], rows = scorer.multiple_choice(facts)
            if not suffix:  # the model's own answers, beside those it gives aloud (spoken_qa)
                self._fact_hyps("text_qa", [{**row, "question": question} for row, (question, _, _) in zip(rows, questions)])

    def spoken_qa(self) -> None:
        """The factual questions of `text`, asked aloud and scored by the same rule (eval/spoken_qa.py)."""
        from opuslm.eval.spoken_qa import SPOKEN_QA_TASK, spoken_multiple_choice
        from opuslm.eval.text import factual_questions

        items = factual_questions()[: self.limit] if self.limit else factual_questions()
        instruction = BUILTIN_TASKS[SPOKEN_QA_TASK].instructions[0]
        accuracy, rows = spoken_multiple_choice(self.lm, items, instruction, progress=self.progress)
        self._fact_hyps("spoken_qa", rows)
        self.results["spoken_facts_accuracy"] = accuracy

    def _fact_hyps(self, task: str, rows: list[dict]) -> None:
        """One hypothesis a factual question, numbered in `factual_questions` order in text and aloud alike."""
        from opuslm.eval.text import fact_category

        for number, row in enumerate(rows):
            self.hyps.append({"id": f"fact-{number:03d}", "task": task, "split": "test", "speaker": row.get("speaker"),
                              "question": row["question"], "category": fact_category(row["question"]),
                              "reference": row["options"][row["answer"]], "hypothesis": row["options"][row["chosen"]],
                              "score": float(row["chosen"] == row["answer"])})

    # ---- all ----
    def run(self, tasks: list[str], base_llm: Path | None = None, run_dir: Path | None = None) -> dict:
        from opuslm.eval.report import write_report
        from opuslm.tokenize.identity import folder_hash

        table = getattr(self.lm, "tasks", None)
        check_eval_tasks(tasks, table)
        started = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        if "asr" in tasks:
            self.asr("dev")
            self.asr("test")
        for task in CLASSIFICATION:
            if task in tasks:
                self.classification(task, "test")
        if "srwt" in tasks:
            self.srwt("test")
        if "sttc" in tasks:
            self.sttc("test")
        if "tts" in tasks:
            self.tts("test")
        if "continuation" in tasks:
            self.continuation("test")
        if "text" in tasks:
            self.text("test", base_llm)
        if "spoken_qa" in tasks:
            self.spoken_qa()
        for name in tasks:
            if table is not None and name in table.declared:
                self.declared(table.declared[name], "test")
        confusion = self.results.pop("confusion", {})
        declared = self.results.pop("declared", {})
        sampling = getattr(self.lm, "sampling", None)  # a scripted test model may have none
        results = {
            "metrics": self.results, "model": str(self.model_folder), "model_vocab": self.lm.vocab.hash,
            "corpus": str(self.corpus), "corpus_manifest_hash": folder_hash(self.corpus / "manifest.jsonl"),
            "judge": getattr(self.judge, "info", None) if "tts" in tasks else None, "limit": self.limit,
            "guard": getattr(sampling, "guard", False),
            "timestamps": getattr(sampling, "timestamps", None) if "srwt" in tasks else None,
            "aligner": getattr(sampling, "aligner", None) if "srwt" in tasks else None,
            "asr_decoding": asr_decoding(sampling) if "asr" in tasks else None,
            "seconds": round(time.time() - started, 1),
            "confusion": {task: {"labels": labels, "counts": counts} for task, (labels, counts) in confusion.items()},
            "declared": declared,
            "malformed": malformed_outputs(self.hyps),
            "facts_by_category": facts_by_category(self.hyps),
            "samples": self.samples,
        }
        write_json(self.out / "results.json", results, indent=1)
        with open(self.out / "hyps.jsonl", "w", encoding="utf-8") as f:
            for row in self.hyps:
                f.write(json_text(row, None) + "\n")
        write_report(self.out, results, run_dir)
        return results
