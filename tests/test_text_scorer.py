"""The text scorer's batches against one sequence at a time, on a plain HF LLM and on the multi-stream
model's text range grown from it."""

import math

import pytest
import torch

SENTENCES = ["a cat sat.", "the train to london leaves at nine.", "x", "water boils at one hundred degrees.",
             "she planted tomatoes in the garden last spring, and they grew."]
ITEMS = [("Question: What colour is snow?\nAnswer:", ["white", "red", "dark blue", "g"], 0),
         ("Question: What is 2 plus 2?\nAnswer:", ["3", "4", "five", "22"], 1)]


@pytest.fixture(scope="module")
def llms(char_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from opuslm.model.multistream import OpusLM
    from opuslm.vocab import JointVocab

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    llm = LlamaForCausalLM(config).eval()
    vocab = JointVocab(semantic_size=16, num_codebooks=2, codebook_size=8, text_size=len(char_tokenizer))
    return {"hf": llm, "opuslm": OpusLM.from_llm(config, vocab).eval()}


def one_at_a_time(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) of one unpadded sequence, read off the LLM's own forward."""
    with torch.no_grad():
        x = torch.tensor([ids])
        logits = model.text_logits(x) if hasattr(model, "vocab") else model(x).logits
    return logits[0, :-1].float().log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]


@pytest.mark.parametrize("kind", ["hf", "opuslm"])
@pytest.mark.parametrize("batch_tokens", [1, 40, 4096])
def test_batched_scores_equal_one_sequence_at_a_time(llms, char_tokenizer, kind, batch_tokens):
    from opuslm.eval.text import TextScorer

    scorer = TextScorer(llms[kind], char_tokenizer, batch_tokens=batch_tokens)
    sequences = [scorer._ids(text) for text in SENTENCES]
    scored = scorer.token_logprobs(sequences)
    for ids, logprobs in zip(sequences, scored):
        assert logprobs.shape == (len(ids) - 1,)
        assert torch.allclose(logprobs, one_at_a_time(llms[kind], ids), atol=1e-5)
    naive_total = sum(float(one_at_a_time(llms[kind], ids).sum()) for ids in sequences)
    count = sum(len(ids) - 1 for ids in sequences)
    assert scorer.perplexity(SENTENCES) == pytest.approx(math.exp(-naive_total / count), rel=1e-5)


@pytest.mark.parametrize("kind", ["hf", "opuslm"])
def test_multiple_choice_sums_each_options_own_tokens(llms, char_tokenizer, kind):
    from opuslm.eval.text import TextScorer

    scorer = TextScorer(llms[kind], char_tokenizer, batch_tokens=64)
    accuracy, rows = scorer.multiple_choice(ITEMS)
    for (question, options, answer), row in zip(ITEMS, rows):
        prefix = scorer._ids(question)[:-1]  # the question without its end of sequence
        naive = [float(one_at_a_time(llms[kind], prefix + char_tokenizer(" " + o, add_special_tokens=False)["input_ids"])
                       [len(prefix) - 1:].sum()) for o in options]
        assert row["scores"] == pytest.approx(naive, abs=1e-4)
        assert row["chosen"] == max(range(4), key=naive.__getitem__)
    assert accuracy == sum(row["chosen"] == row["answer"] for row in rows) / len(ITEMS)
