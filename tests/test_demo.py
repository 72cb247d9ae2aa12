"""The whole demo pipeline, shrunk to seconds per step: every step runs, the report holds real numbers
from the models trained here, and a re-run resumes instead of redoing."""

import json
import subprocess
import sys

import pytest

from opuslm.demo import minutes
from opuslm.eval import metrics as metrics_module
from opuslm.infer.outputs import emitted_words


TINY = ["--hours", "0.03", "--codec-frames", "2000", "--llm-steps", "3", "--judge-steps", "3", "--aligner-steps", "30",
        "--steps-scale", "0.01", "--text-lines", "2000", "--workers", "1", "--seed", "3"]


def test_the_demo_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "opuslm", "demo", "--out", str(out), *TINY],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "[10/10] evaluate every task" in run.stdout and "demo finished in " in run.stdout
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings["steps"]) == 10  # the steps are the run, each time rounded to 0.1 s
    assert sum(t["seconds"] for t in timings["steps"]) == pytest.approx(timings["total_seconds"], abs=0.5)
    took = [line.strip() for line in run.stdout.splitlines() if line.startswith("    took ")]  # after each step
    assert took == [f"took {minutes(t['seconds'])}" for t in timings["steps"]]
    assert "replays none of the LLM's own text" in run.stdout  # stages/demo.yaml names no replay dataset
    text = json.loads((out / "text" / "text.json").read_text())
    assert sum(text["lines"].values()) + text["left_out_test_lines"] == 2000
    for schedule in ("text_llm_schedule.yaml", "schedule.yaml"):  # text_lm reads the text corpus, not transcripts
        assert f"text: {(out / 'text').resolve()}" in (out / schedule).read_text()
    assert (out / "llm" / "config.json").is_file() and (out / "llm" / "tokenizer.json").is_file()
    summaries = json.loads((out / "run" / "summary.json").read_text())
    assert [s["stage"] for s in summaries] == ["pretrain", "anneal", "instruct"]
    results = json.loads((out / "eval" / "results.json").read_text())
    metrics = results["metrics"]
    for key in ("asr_wer_test", "asr_wer_dev", "sgc_accuracy", "tts_wer", "tts_ceiling_resynthesis_wer",
                "text_perplexity", "text_perplexity_base_llm", "text_mc_accuracy", "english_perplexity",
                "english_perplexity_base_llm", "facts_accuracy", "facts_accuracy_base_llm"):
        assert isinstance(metrics[key], float), key
    hyps = [json.loads(line) for line in (out / "eval" / "hyps.jsonl").read_text().splitlines()]
    assert {h["task"] for h in hyps} >= {"asr", "sgc", "ser", "tts"}
    assert all({"id", "task", "reference", "hypothesis", "score"} <= set(h) for h in hyps)
    report = (out / "eval" / "report.md").read_text()
    assert "| ASR WER, unseen speakers |" in report and "loss_curves.png" in report
    text_qa, spoken_qa = ([h for h in hyps if h["task"] == task] for task in ("text_qa", "spoken_qa"))
    assert len(text_qa) == metrics["facts_questions"]  # every factual question, answered in text, one row each
    assert sum(h["score"] for h in text_qa) / len(text_qa) == pytest.approx(metrics["facts_accuracy"])
    by_category = results["facts_by_category"]  # the questions asked both ways, by what they ask about
    assert sum(c["questions"] for c in by_category.values()) == len(spoken_qa) > 0
    assert sum(c["aloud"] * c["questions"] for c in by_category.values()) == \
        pytest.approx(metrics["spoken_facts_accuracy"] * len(spoken_qa))
    assert "| category | questions | text | aloud | right in both |" in report
    assert (out / "eval" / "loss_curves.png").stat().st_size > 1000
    # SRWT: the model's own transcript (its ASR row of the same clip), placed by the demo's word aligner
    assert results["timestamps"] == "aligned" and (out / "tokenizers" / "aligner" / "aligner.json").is_file()
    asr = {h["id"]: h["hypothesis"] for h in hyps if h["task"] == "asr"}
    srwt = [h for h in hyps if h["task"] == "srwt"]
    shifts = []
    for row in srwt:
        timed = metrics_module.timed_words(row["hypothesis"])
        assert " ".join(w for w, _, _ in timed) == emitted_words(asr[row["id"]])
        assert all(0 <= start <= end <= later for (_, start, end), (_, later, _) in zip(timed, timed[1:] + [("", 1e9, 0)]))
        shifts += metrics_module.boundary_shifts(row["reference"], row["hypothesis"])
    assert len(srwt) > 0  # a smoke-size model may place no word right: then no shift to average
    assert metrics["srwt_aas_ms"] == (pytest.approx(1000 * sum(shifts) / len(shifts)) if shifts else None)

    logs = {s["stage"]: (out / "run" / s["stage"] / "log.jsonl").read_text() for s in summaries}
    again = subprocess.run([sys.executable, "-m", "opuslm", "demo", "--out", str(out), *TINY],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "run" / "summary.json").read_text()) == summaries  # nothing retrained
    assert logs == {stage: (out / "run" / stage / "log.jsonl").read_text() for stage in logs}
    assert json.loads((out / "eval" / "results.json").read_text())["metrics"] == metrics


def test_the_demo_command_is_its_config_one_option_per_field():
    """`opuslm demo`'s options are DemoConfig's fields with its defaults: one place writes them."""
    import dataclasses

    from opuslm.cli.main import build_parser
    from opuslm.demo import DemoConfig

    args = build_parser().parse_args(["demo"])
    assert DemoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)}) == DemoConfig()
    args = build_parser().parse_args(["demo", "--steps-scale", "0.5", "--llm", "some/llm", "--semantic-features", "cepstral"])
    assert (args.steps_scale, str(args.llm), args.semantic_features) == (0.5, "some/llm", "cepstral")
    assert build_parser().parse_args(["demo"]).heard_features  # the default, with its --no- switch
    assert not build_parser().parse_args(["demo", "--no-heard-features"]).heard_features


def test_dropout_without_the_features_is_refused_before_any_step(tmp_path):
    from opuslm.demo import DemoConfig, run_demo
    from opuslm.errors import OpusLMError

    with pytest.raises(OpusLMError, match="--heard-dropout 0.3 drops heard features, and --no-heard-features"):
        run_demo(DemoConfig(out=tmp_path / "demo", heard_features=False, heard_dropout=0.3))
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("options, refusal", [({"ctc_weight": 1.5}, "--ctc-weight"),
                                              ({"ctc_weight": 0.3, "heard_features": False}, "--ctc-layer adapter")])
def test_a_decoding_the_eval_cannot_run_is_refused_before_any_step(tmp_path, options, refusal):
    from opuslm.demo import DemoConfig, run_demo
    from opuslm.errors import OpusLMError

    with pytest.raises(OpusLMError, match=refusal):
        run_demo(DemoConfig(out=tmp_path / "demo", **options))
    assert not (tmp_path / "demo").exists()


def test_a_schedule_that_listens_through_features_refuses_no_heard_features_before_any_step(tmp_path):
    from opuslm.demo import DemoConfig, _listening_parts, run_demo
    from opuslm.errors import OpusLMError

    config = DemoConfig(out=tmp_path / "demo", heard_features=False, schedule="demo_smollm2.yaml", llm=tmp_path / "llm")
    with pytest.raises(OpusLMError, match=r"\(init.heard_mix: text_posterior, stage listen \(objective: heard_ctc\)\), "
                                          "which --no-heard-features turns off"):
        run_demo(config)
    assert not (tmp_path / "demo").exists()
    assert _listening_parts(DemoConfig()) == []  # the embedded default's schedule runs with or without them
