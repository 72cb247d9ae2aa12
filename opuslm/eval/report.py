"""`report.md` and its plots: task metrics (bar chart), confusion matrices, loss curves across stages."""

from __future__ import annotations

import json
import math
from pathlib import Path

# (metric, what it is, target for the embedded default, higher is better)
ROWS = (
    ("asr_wer_test", "ASR WER, unseen speakers", 0.10, False),
    ("asr_wer_dev", "ASR WER, seen speakers", None, False),
    ("sgc_accuracy", "SGC (gender) accuracy, after the transcript", 0.95, True),
    ("sgc_label_accuracy", "SGC (gender) accuracy, tag only", 0.95, True),
    ("sap_accuracy", "SAP (age) accuracy, after the transcript", 0.75, True),
    ("sap_label_accuracy", "SAP (age) accuracy, tag only", 0.75, True),
    ("ser_accuracy", "SER (emotion) accuracy, after the transcript", 0.7, True),
    ("ser_label_accuracy", "SER (emotion) accuracy, tag only", 0.7, True),
    ("ssr_accuracy", "SSR (style) accuracy, after the transcript", 0.85, True),
    ("ssr_label_accuracy", "SSR (style) accuracy, tag only", 0.85, True),
    ("ved_accuracy", "VED (vocal event) accuracy, after the transcript", 0.95, True),
    ("ved_label_accuracy", "VED (vocal event) accuracy, tag only", 0.95, True),
    ("srwt_aas_ms", "SRWT boundary shift (AAS, ms)", 60.0, False),
    ("srwt_wer", "SRWT word WER", 0.15, False),
    ("sttc_accuracy", "STTC answer accuracy", 0.80, True),
    ("tts_wer", "TTS judge WER (corpus)", None, False),
    ("tts_wer_mean_utterance", "TTS judge WER (mean per utterance)", None, False),
    ("tts_teacher_forced_wer", "TTS judge WER with every earlier frame given (teacher-forced, greedy)", None, False),
    ("tts_runaway_share", "TTS share that ran away (>= 2x the original's length)", 0.02, False),
    ("tts_silent_share", "TTS share silent (< 0.25 s or no energy)", 0.02, False),
    ("tts_length_ratio", "TTS length / the original's (mean)", None, False),
    ("tts_speaker_sim", "TTS speaker similarity to the prompt", None, True),
    ("tts_speaker_sim_same_speaker", "speaker similarity, same speaker's other utterance", None, True),
    ("tts_speaker_sim_different_speaker", "speaker similarity, a different speaker", None, True),
    ("continuation_speaker_sim", "audio continuation's speaker similarity to its prompt", None, True),
    ("continuation_speaker_sim_same_speaker", "speaker similarity, the prompt's own second half", None, True),
    ("continuation_speaker_sim_different_speaker", "speaker similarity, a different speaker's second half", None, True),
    ("resynthesis_speaker_sim", "speaker similarity of codec resynthesis to the original", 0.85, True),
    ("tts_ceiling_resynthesis_wer", "judge WER on codec resynthesis (ceiling)", None, False),
    ("tts_judge_original_wer", "judge WER on the original audio", 0.20, False),
    ("tts_judge_original_wer_normal", "judge WER on the original audio, normal style", 0.10, False),
    ("text_perplexity", "text perplexity (held-out)", None, False),
    ("text_perplexity_base_llm", "text perplexity of the LLM before speech", None, False),
    ("text_mc_accuracy", "text multiple-choice accuracy", None, True),
    ("text_mc_accuracy_base_llm", "multiple-choice accuracy of the LLM before speech", None, True),
    ("english_perplexity", "perplexity of general English (held-out)", None, False),
    ("english_perplexity_base_llm", "perplexity of general English, the LLM before speech", None, False),
    ("facts_accuracy", "factual questions in text (4 options)", None, True),
    ("facts_accuracy_base_llm", "factual questions in text, the LLM before speech", None, True),
    ("spoken_facts_accuracy", "the factual questions asked aloud (4 options)", None, True),
)
SPOKEN_SHARE_OF_TEXT = 0.5  # spoken-QA accuracy as a share of text-QA accuracy (issue 29's CPU recipe)

# Text ability kept, against the LLM the model grew from: (metric, "ratio" or "points", allowance)
KEPT_FROM_BASE = (("text_perplexity", "ratio", 1.10), ("english_perplexity", "ratio", 1.10),
                  ("facts_accuracy", "points", 0.05))


FACT_OPTIONS = 4  # the factual questions are four-way multiple choice (opuslm.eval.text)


def above_chance(accuracy: float, questions: int, options: int = FACT_OPTIONS) -> bool:
    """Whether an accuracy on `questions` items of `options` choices is more than two standard errors
    (binomial, at chance) above guessing. A target measured against an accuracy that is not compares
    with noise, and is not met, whatever the numbers say."""
    chance = 1 / options
    return accuracy > chance + 2 * math.sqrt(chance * (1 - chance) / questions)


def references_at_chance(metrics: dict) -> dict[str, str]:
    """The targets whose reference is a factual-question accuracy at chance: target -> the reference's key."""
    questions = metrics.get("facts_questions")
    if not questions:
        return {}
    found = {}
    for target, reference in (("spoken_facts_accuracy", "facts_accuracy"), ("facts_accuracy", "facts_accuracy_base_llm")):
        if metrics.get(target) is not None and metrics.get(reference) is not None \
                and not above_chance(metrics[reference], questions):
            found[target] = reference
    return found


def _value(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def targets_met(metrics: dict) -> dict[str, bool]:
    met = {}
    for key, _, target, higher in ROWS:
        if target is not None and metrics.get(key) is not None:
            met[key] = metrics[key] >= target if higher else metrics[key] <= target
    ceiling, original = metrics.get("tts_ceiling_resynthesis_wer"), metrics.get("tts_judge_original_wer")
    if metrics.get("tts_wer") is not None and ceiling is not None:
        met["tts_wer"] = metrics["tts_wer"] <= min(1.5 * ceiling, 0.6)
    for task in ("tts", "continuation"):
        spoken, same, different = (metrics.get(f"{task}_speaker_sim{suffix}")
                                   for suffix in ("", "_same_speaker", "_different_speaker"))
        if spoken is not None and same is not None and different is not None:
            met[f"{task}_speaker_sim"] = spoken >= different + 0.5 * (same - different)
    if ceiling is not None and original is not None:
        met["tts_ceiling_resynthesis_wer"] = ceiling <= 1.3 * original
    if metrics.get("spoken_facts_accuracy") is not None and metrics.get("facts_accuracy") is not None:
        met["spoken_facts_accuracy"] = metrics["spoken_facts_accuracy"] >= SPOKEN_SHARE_OF_TEXT * metrics["facts_accuracy"]
    for key, kind, allowance in KEPT_FROM_BASE:
        value, base = metrics.get(key), metrics.get(f"{key}_base_llm")
        if value is not None and base is not None:
            met[key] = value <= allowance * base if kind == "ratio" else value >= base - allowance
    for target in references_at_chance(metrics):
        met[target] = False
    return met


def table(metrics: dict) -> str:
    met = targets_met(metrics)
    lines = ["| metric | value | target | met |", "| --- | --- | --- | --- |"]
    for key, label, target, higher in ROWS:
        if key not in metrics:
            continue
        goal = ("" if target is None else (">= " if higher else "<= ") + _value(target))
        if key == "tts_wer":
            goal = "<= 1.5x ceiling and <= 0.6"
        if key in ("tts_speaker_sim", "continuation_speaker_sim"):
            goal = ">= different + half the gap to same"
        if key == "tts_ceiling_resynthesis_wer":
            goal = "<= 1.3x original"
        if key == "spoken_facts_accuracy":
            goal = f">= {SPOKEN_SHARE_OF_TEXT:g}x text"
        kept = {k: (kind, allowance) for k, kind, allowance in KEPT_FROM_BASE}
        if key in kept:
            kind, allowance = kept[key]
            goal = f"<= {allowance:g}x base LLM" if kind == "ratio" else f">= base LLM - {allowance:g}"
        lines.append(f"| {label} | {_value(metrics[key])} | {goal} | {'' if key not in met else ('yes' if met[key] else 'NO')} |")
    for target, reference in references_at_chance(metrics).items():
        lines.append(f"\n{target} is not met: its reference {reference} = {metrics[reference]:.3f} is within two standard "
                     f"errors of guessing ({1 / FACT_OPTIONS:g} on {metrics['facts_questions']} four-way questions), so "
                     "the comparison is with noise.")
    return "\n".join(lines)


def teacher_forced_line(accuracy: dict | None) -> list[str]:
    """Per stream, the share of a recording's ids that TTS chose with every earlier frame given."""
    if not accuracy:
        return []
    shares = ", ".join(f"{name} {_value(value)}" for name, value in accuracy.items())
    return [f"TTS with every earlier frame given, the share of the recording's own ids chosen per stream: {shares}.", ""]


def describe_judge(info: dict | None) -> str:
    """One line for the report; results.json keeps the whole record (the CTC judge's lexicon included)."""
    if not info:
        return "none (no TTS scored)"
    if info.get("kind") == "ctc":
        return (f"CTC judge ({info['steps']} steps on {info['train_utterances']} real utterances, dev WER "
                f"{info['dev_wer']:.3f}, lexicon of {len(info.get('lexicon', []))} words)")
    return ", ".join(f"{k} {v}" for k, v in info.items() if not isinstance(v, (list, dict)))


def _bar_plot(plt, path: Path, rows, metrics: dict, confusion: dict, higher: bool) -> None:
    """One bar per metric, with its target (red) and, for an accuracy, the majority class's (gray)."""
    figure, axis = plt.subplots(figsize=(8, 0.9 + 0.35 * len(rows)))
    labels = [label for _, label, _ in rows]
    axis.barh(labels, [metrics[key] for key, _, _ in rows], color="tab:blue" if higher else "tab:orange")
    for i, (key, _, target) in enumerate(rows):
        if target is not None:
            axis.plot([target, target], [i - 0.4, i + 0.4], color="red", linewidth=2)
        counts = confusion.get(key.removesuffix("_accuracy"), {}).get("counts")
        if higher and counts:
            majority = max(sum(row) for row in counts) / max(sum(map(sum, counts)), 1)
            axis.plot([majority, majority], [i - 0.4, i + 0.4], color="gray", linestyle="--", linewidth=1.5)
    axis.set_xlim(0, 1 if higher else max(1.0, *(metrics[key] for key, _, _ in rows)))
    axis.set_xlabel("accuracy (higher is better)" if higher else "WER (lower is better)")
    axis.set_title(("accuracies" if higher else "word error rates") + ": red, the target"
                   + ("; gray dashed, the majority class" if higher else ""))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


TIMESTAMP_READINGS = {"after-asr": "after ASR: the model's own transcript, with the times it chooses",
                      "aligned": "after ASR: the model's own transcript, its words placed by the word aligner",
                      "free": "in one free pass: words and times together, as trained"}


def write_report(out: Path, results: dict, run_dir: Path | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = results["metrics"]
    plots = []
    confusion = results.get("confusion", {})
    for name, higher in (("task_metrics.png", True), ("wer_metrics.png", False)):
        rows = [(key, label, target) for key, label, target, up in ROWS
                if up == higher and isinstance(metrics.get(key), float) and "base" not in key]
        if rows:
            _bar_plot(plt, out / name, rows, metrics, confusion, higher)
            plots.append(name)
    for task, matrix in results.get("confusion", {}).items():
        labels, counts = matrix["labels"], matrix["counts"]
        figure, axis = plt.subplots(figsize=(1 + 0.6 * len(labels), 1 + 0.5 * len(labels)))
        axis.imshow(counts, cmap="Blues")
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(counts):
            for j, n in enumerate(row):
                axis.text(j, i, str(n), ha="center", va="center", fontsize=8)
        axis.set_xlabel("predicted (first tag)")
        axis.set_ylabel("reference")
        axis.set_title(task.upper())
        figure.tight_layout()
        figure.savefig(out / f"confusion_{task}.png", dpi=120)
        plt.close(figure)
        plots.append(f"confusion_{task}.png")
    if run_dir is not None and (run_dir / "summary.json").is_file():
        summaries = json.loads((run_dir / "summary.json").read_text())
        figure, axis = plt.subplots(figsize=(8, 3.5))
        offset = 0
        for summary in summaries:
            log = run_dir / summary["stage"] / "log.jsonl"
            records = [json.loads(line) for line in log.read_text().splitlines()]
            steps = [offset + r["step"] for r in records if "loss" in r]
            line, = axis.plot(steps, [r["loss"] for r in records if "loss" in r], label=summary["stage"], linewidth=1)
            validated = [(offset + r["step"], sum(r["validation"].values()) / len(r["validation"]))
                         for r in records if r.get("validation")]
            if validated:
                axis.plot(*zip(*validated), "o", color=line.get_color(), markersize=4)
            if offset:
                axis.axvline(offset, color="gray", linestyle=":", linewidth=1)
            offset += summary["steps"]
        axis.set_xlabel("step (stages in sequence; dotted: where a stage starts)")
        axis.set_ylabel("loss (weighted)")
        axis.set_title("training loss (lines) and mean validation loss (dots) per stage")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out / "loss_curves.png", dpi=120)
        plt.close(figure)
        plots.append("loss_curves.png")
    lines = [f"# Evaluation of {results['model']}", "",
             f"Corpus {results['corpus']} (manifest {results['corpus_manifest_hash']}), vocabulary {results['model_vocab']}, "
             f"judge: {describe_judge(results['judge'])}; {results['seconds']} s.", ""]
    if results.get("timestamps"):
        lines += [f"SRWT decoded {TIMESTAMP_READINGS[results['timestamps']]} (`--timestamps {results['timestamps']}`).", ""]
    decoding = results.get("asr_decoding")
    if decoding:
        how = "greedy" if decoding["beam"] == 1 else f"a beam of {decoding['beam']}"
        if decoding["ctc_weight"]:
            how += (f", jointly with the CTC posteriors of the {decoding['ctc_layer']} at weight "
                    f"{decoding['ctc_weight']} (`--ctc-weight {decoding['ctc_weight']} --ctc-layer {decoding['ctc_layer']}`)")
        lines += [f"ASR decoded {how}.", ""]
    lines += [table(metrics), ""]
    lines += teacher_forced_line(metrics.get("tts_teacher_forced_accuracy"))
    lines += malformed_table(results.get("malformed", {}))
    lines += facts_table(results.get("facts_by_category", {}))
    lines += declared_table(results.get("declared", {}))
    lines += [f"![{p}]({p})" for p in plots]
    lines += sample_tables(results.get("samples", {}))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if results.get("samples", {}).get("tts"):
        write_listening_page(out, results["samples"]["tts"], plt)


LISTENED = (("prompt", "speaker prompt", None), ("original", "original", "judge_original"),
            ("resynthesis", "codec resynthesis", "judge_resynthesis"), ("generated", "generated (TTS)", "judge_generated"))
TOP_DB = 80.0  # a spectrogram's range below its peak


def write_listening_page(out: Path, samples: list[dict], plt) -> Path:
    """`report.html`: each TTS sample's prompt, original, codec resynthesis and generated audio as players,
    each with its spectrogram and what the judge heard."""
    import html

    import numpy as np
    import soundfile as sf

    # digital silence (eSpeak's pauses) has no level: -inf dB, which matplotlib masks and leaves unpainted,
    # white gaps that look like a broken image; they take the colour map's darkest
    magma = plt.get_cmap("magma")
    colours = magma.with_extremes(bad=magma(0))
    rows = []
    for sample in samples:
        cells = []
        for key, title, heard in LISTENED:
            if not sample.get(key):
                cells.append(f"<td>no {title}</td>")
                continue
            audio, rate = sf.read(str(out / sample[key]), dtype="float32")
            image = sample[key].replace(".wav", ".png")
            figure, axis = plt.subplots(figsize=(3.2, 1.6))
            if len(audio) > 256:
                with np.errstate(divide="ignore"):
                    power, _, _, drawn = axis.specgram(audio, NFFT=512, Fs=rate, noverlap=384, cmap=colours)
                # the same 80 dB below each clip's peak for every player (librosa's top_db), so the four of a
                # row compare; scaled to its own quietest bin, near-silence flattened the original's speech
                top = 10 * np.log10(max(float(power.max()), 1e-30))
                drawn.set_clim(top - TOP_DB, top)
            axis.set_axis_off()
            figure.tight_layout(pad=0.1)
            figure.savefig(out / image, dpi=80)
            plt.close(figure)
            said = f"<p>judge: {html.escape(sample.get(heard) or '')}</p>" if heard else ""
            cells.append(f'<td><b>{title}</b><br><audio controls preload="metadata" src="{html.escape(sample[key])}">'
                         f'</audio><br><img src="{html.escape(image)}" alt="spectrogram of {title}">{said}</td>')
        rows.append(f"<tr><td>{html.escape(sample['text'])}</td>{''.join(cells)}</tr>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>TTS samples</title><style>body{font-family:sans-serif}"
            "td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}p{margin:2px;font-size:90%}"
            "table{width:100%;table-layout:fixed}td:first-child{width:12%}audio,img{width:100%}</style></head>"
            "<body><h1>TTS samples</h1><p>Each row: the text, the speaker prompt, the original utterance, its codec "
            "resynthesis (what the acoustic tokens can say at best) and the model's speech, with what the judge heard."
            "</p><table>" + "".join(rows) + "</table></body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def declared_table(declared: dict) -> list[str]:
    """The tasks the model was fine-tuned on, each with its score, the majority label's share (chance for
    a classifier) and the reference labels its train split never had."""
    if not declared:
        return []
    lines = ["", "## Declared tasks (test split)", "", "| task | score | value | majority label's share | "
             "labels unseen in training (seen in) | utterances |", "| --- | --- | --- | --- | --- | --- |"]
    for name, d in declared.items():
        unseen = f"{', '.join(d['unseen_labels']) or 'none'} ({d['seen_in']})" if "unseen_labels" in d else ""
        lines.append(f"| {name} | {d['score']} | {_value(d['value'])} | {_value(d.get('majority'))} | {unseen} | "
                     f"{d['utterances']} |")
    return lines


def malformed_target(task: str) -> float:
    """The share of malformed outputs a task may have: none for ASR and the tag-only tasks (the
    simplest formats), 2% for the others."""
    return 0.0 if task == "asr" or task.endswith("_label") else 0.02


def facts_table(by_category: dict) -> list[str]:
    """The modality gap by what the factual questions ask about (runner.facts_by_category)."""
    if not by_category:
        return []
    lines = ["", "## The factual questions by category, in text and aloud (right in both: the same question both ways)",
             "", "| category | questions | text | aloud | right in both |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {category} | {c['questions']} | {c['text']:.2f} | {c['aloud']:.2f} | {c['both']:.2f} |"
              for category, c in by_category.items()]
    return lines + [""]


def malformed_table(malformed: dict) -> list[str]:
    """Per task, the outputs that do not read as the task's format (`opuslm.infer.outputs`)."""
    if not malformed:
        return []
    lines = ["", "## Malformed outputs (stray or unknown tags, bad timestamps, a missing answer)", "",
             "| task | malformed | of | share | target | met | commonest problems |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, m in malformed.items():
        target = malformed_target(task)
        problems = "; ".join(f"{_cell(p)} x{n}" for p, n in m["problems"].items())
        lines.append(f"| {task} | {m['malformed']} | {m['outputs']} | {m['share']:.3f} | <= {target:g} | "
                     f"{'yes' if m['share'] <= target else 'NO'} | {problems} |")
    return lines


def _cell(text) -> str:
    return "" if text is None else str(text).replace("|", "\\|")


def sample_tables(samples: dict) -> list[str]:
    """Something to listen to: TTS samples (the speaker prompt, the text, the generated and original
    audio, and what the judge heard in each), and ASR hypotheses beside their references."""
    lines = []
    if samples.get("tts"):
        lines += ["", "## TTS samples (players and spectrograms: [report.html](report.html))", "",
                  "| text | prompt | generated | judge heard | resynthesis | judge heard | original | judge heard |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s in samples["tts"]:
            prompt = f"[prompt]({s['prompt']})" if s.get("prompt") else ""
            resynthesis = f"[resynthesis]({s['resynthesis']}) | {_cell(s['judge_resynthesis'])}" if s.get("resynthesis") else " | "
            lines.append(f"| {_cell(s['text'])} | {prompt} | [generated]({s['generated']}) | {_cell(s['judge_generated'])} "
                         f"| {resynthesis} | [original]({s['original']}) | {_cell(s['judge_original'])} |")
    if samples.get("asr"):
        lines += ["", "## ASR samples (test: unseen speakers)", "", "| reference | hypothesis | style, emotion |",
                  "| --- | --- | --- |"]
        for s in samples["asr"]:
            labels = s.get("labels") or {}
            lines.append(f"| {_cell(s['reference'])} | {_cell(s['hypothesis'])} | "
                         f"{_cell(', '.join(str(labels[k]) for k in ('style', 'emotion') if k in labels))} |")
    return lines
