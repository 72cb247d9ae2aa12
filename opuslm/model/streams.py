"""The multi-stream parts that sit around any decoder, whichever library runs it.

A backend (the HF causal LM in `multistream.py`, Megatron-Core's GPT decoder in
`opuslm.backends.megatron.model`) supplies its input embedding module, its joint head as one
`[V, D]` weight, the parameters of both tables, and the decoder's hidden states for a batch of
delayed frames. Everything else is here, once:

- embedding: a frame `[N]` of joint ids embeds as the sum of its streams' rows of the one joint
  embedding table; pad embeds to zero;
- the continuous input path (`MultiStreamConfig.heard_features`, off by default), as OSUM and
  Kimi-Audio read speech: at the frames of the audio a task listens to, the semantic tokenizer's own
  encoder features (cached in the token shards) pass through a small adapter and are added to the
  frame's embedding. The ids stay the inputs and the targets everywhere, so TTS, the delay interleave
  and the loss are unchanged; the adapter's last layer starts at zero, so a model with the path
  switched on starts exactly where the same model without it does;
- heads: stream n adds its learned offset vector to the hidden state (none for stream 0); stream 0
  is scored by the full head, stream k >= 1 by its codebook's rows only — a softmax restricted to
  the slice, so an id outside it cannot be produced;
- the next-frame loss (`opuslm.model.loss`), with packed rows attending within each example.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from opuslm.errors import OpusLMError
from opuslm.interleave import check_delays, default_delays
from opuslm.model.config import MultiStreamConfig
from opuslm.batch_stream import HeardFeatures, HeardTranscripts
from opuslm.model.loss import LossOutput, blank_and_text_rows, heard_ctc_loss, multistream_loss, next_frame_mask
from opuslm.vocab import PAD_ID, JointVocab


def packed_attention(document_ids: torch.Tensor) -> torch.Tensor:
    """`[B, S]` example ids of packed rows -> `[B, S, S]` bool, True where step i may attend to step j:
    causal, and within the same example."""
    steps = document_ids.shape[-1]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=document_ids.device).tril()
    return causal & (document_ids[:, :, None] == document_ids[:, None, :])


def heard_adapter(features: int, hidden_size: int, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """Features `[..., F]` -> `[..., D]`: two linear layers with a GELU between (OSUM's adapter is a
    convolution and transformer layers; a 25 Hz grid needs no downsampling here). The last layer starts
    at zero, so the path adds nothing until it is trained.

    The first layer is drawn (as `nn.Linear` draws it) from its own generator seeded by `seed`: drawn
    from the global one, its weights depended on what the process had drawn before, and the same
    schedule trained to different models in `opuslm demo` and `opuslm stages run` (and from one run to
    the next), the gradient differing from the first step although the loss did not."""
    adapter = nn.Sequential(nn.Linear(features, hidden_size, dtype=dtype), nn.GELU(),
                            nn.Linear(hidden_size, hidden_size, dtype=dtype))
    generator = torch.Generator().manual_seed(seed)
    bound = features ** -0.5
    with torch.no_grad():
        for tensor in (adapter[0].weight, adapter[0].bias):
            tensor.copy_(torch.empty(tensor.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator))
    nn.init.zeros_(adapter[2].weight)
    nn.init.zeros_(adapter[2].bias)
    return adapter


class MultiStreamLM(nn.Module):
    """Base of both backends; subclasses call `_init_streams` and implement the backend hooks."""

    vocab: JointVocab
    config: MultiStreamConfig

    def _init_streams(self, vocab: JointVocab, config: MultiStreamConfig | None, hidden_size: int,
                      dtype: torch.dtype, seed: int = 0) -> None:
        self.vocab, self.config = vocab, config or MultiStreamConfig()
        self.delays = check_delays(self.config.delays or default_delays(vocab.num_streams), vocab.num_streams)
        self.config.delays = self.delays
        self.stream_offsets = nn.Parameter(torch.zeros(vocab.num_streams - 1, hidden_size, dtype=dtype))
        if self.config.heard_features:
            self.heard_adapter = heard_adapter(self.config.heard_features, hidden_size, dtype, seed)

    # ---- backend hooks ----
    def input_embeddings(self) -> nn.Module:
        """The embedding module over all joint ids (possibly sharded over tensor-parallel ranks)."""
        raise NotImplementedError

    def joint_head(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The full head over the joint vocabulary: weight `[V, D]` and bias (or None)."""
        raise NotImplementedError

    def table_parameters(self) -> list[nn.Parameter]:
        """The embedding and head weights (which take no weight decay)."""
        raise NotImplementedError

    def hidden_states(self, frames: torch.Tensor, position_ids: torch.Tensor | None = None,
                      document_ids: torch.Tensor | None = None, heard: HeardFeatures | None = None) -> torch.Tensor:
        """`[B, N, S]` delayed frames (and their heard features) -> the decoder's final hidden states `[B, S, D]`."""
        raise NotImplementedError

    # ---- shared ----
    def embed(self, frames: torch.Tensor, heard: HeardFeatures | None = None) -> torch.Tensor:
        """`[B, N, S]` joint ids -> `[B, S, D]`: the sum of the streams' embeddings, pad as zero. One
        lookup for all streams: each lookup's backward writes a dense table-sized gradient. `heard`:
        the continuous input path's features of the same steps, added through the adapter where present."""
        table = self.input_embeddings()
        rows = table(frames)
        embeds = (rows * (frames != PAD_ID).unsqueeze(-1).to(rows.dtype)).sum(1)
        if heard is None:
            return embeds
        if not self.config.heard_features:
            raise OpusLMError("heard features were given to a model without the continuous input path "
                              "(its heard_features is 0)")
        return embeds + self.heard_input(heard, embeds.dtype)

    def heard_adapter_output(self, heard: HeardFeatures, dtype: torch.dtype) -> torch.Tensor:
        """`[B, S, D]`: the adapter's output where features are present, zero elsewhere (what the adapter's CTC scores)."""
        return self.heard_adapter(heard.values.to(dtype)) * heard.present.unsqueeze(-1).to(dtype)

    def heard_input(self, heard: HeardFeatures, dtype: torch.dtype) -> torch.Tensor:
        """`[B, S, D]`: what the continuous input path adds to the embeddings (`config.heard_mix`), zero where
        no features are present."""
        output = self.heard_adapter_output(heard, dtype)
        if self.config.heard_mix == "adapter":
            return output
        weight, bias = blank_and_text_rows(self)  # scored as the adapter's CTC scores them (the head's rows)
        words = self.input_embeddings().weight[slice(*self.vocab.modality_range("text"))]  # read as the LLM reads text
        mixed = torch.zeros_like(output)
        present = heard.present.to(output.device)
        posterior = F.linear(output[present], weight, bias).softmax(-1)
        mixed[present] = posterior[:, 1:] @ words  # the blank adds nothing
        return mixed

    def adapter_ctc_loss(self, heard: HeardTranscripts | None, features: HeardFeatures | None) -> LossOutput:
        """The `heard_ctc` objective (a stage's `objective`): the auxiliary CTC loss asked of the adapter's
        output alone (`heard_adapter_output`, before any `heard_mix`), scored by the text rows; no decoder runs."""
        if heard is None or features is None:
            raise OpusLMError("objective heard_ctc needs batches with transcripts (data.ctc_weight > 0) and heard "
                              "features (a model with the continuous input path)")
        ctc_sum, per_token = heard_ctc_loss(self, self.heard_adapter_output(features, self.stream_offsets.dtype), heard)
        ctc_sum = ctc_sum + 0.0 * sum(p.sum() for p in self.heard_adapter.parameters())  # a batch that hears nothing
        frames = int(features.present.sum())
        return LossOutput(ctc_sum / max(frames, 1), ctc_sum, {"ctc": per_token}, {}, frames, frames)

    def stream_state_parameters(self) -> list[nn.Parameter]:
        """The parameters of `stream_state`, as parameters."""
        return [self.stream_offsets, *(self.heard_adapter.parameters() if self.config.heard_features else ())]

    def stream_state(self) -> dict[str, torch.Tensor]:
        """The parameters outside the backbone (`streams.safetensors`): the stream offsets and, where the
        model has one, the continuous input path's adapter."""
        state = {"stream_offsets": self.stream_offsets}
        if self.config.heard_features:
            state.update({f"heard_adapter.{k}": v for k, v in self.heard_adapter.state_dict().items()})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def load_stream_state(self, state: dict[str, torch.Tensor], where) -> None:
        expected = set(self.stream_state())
        if set(state) != expected:
            raise OpusLMError(f"{where}: streams.safetensors holds {', '.join(sorted(state))} but the model's config "
                              f"needs {', '.join(sorted(expected))}: the folder is damaged or from another version")
        self.stream_offsets.data.copy_(state["stream_offsets"])
        if self.config.heard_features:
            self.heard_adapter.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("heard_adapter.")})

    def stream_rows(self, hidden: torch.Tensor, stream: int) -> torch.Tensor:
        return hidden if stream == 0 else hidden + self.stream_offsets[stream - 1]

    def stream_heads(self) -> list[tuple[torch.Tensor, torch.Tensor | None, int]]:
        """Per stream: the head rows it scores against, their bias, and the joint id of row 0. The
        codebook rows are cut from one slice of the head, so backward writes one table-sized
        gradient, not one per stream."""
        weight, bias = self.joint_head()
        codec_start, codec_end = self.vocab.modality_range("codec")
        size = self.vocab.codebook_size
        codec_weight = weight[codec_start:codec_end]
        codec_bias = bias[codec_start:codec_end] if bias is not None else None
        heads = [(weight, bias, 0)]
        for k in range(self.vocab.num_codebooks):
            part = codec_bias[k * size:(k + 1) * size] if codec_bias is not None else None
            heads.append((codec_weight[k * size:(k + 1) * size], part, codec_start + k * size))
        return heads

    def stream_logits(self, hidden: torch.Tensor, stream: int) -> torch.Tensor:
        """Logits over the stream's own ids: row j is joint id `stream_range(stream)[0] + j`."""
        weight, bias, _ = self.stream_heads()[stream]
        return nn.functional.linear(self.stream_rows(hidden, stream), weight, bias)

    def codebook_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """`[..., D]` -> `[..., K, codebook_size]`: every codebook stream's logits in one product (what
        `stream_logits(hidden, k + 1)` gives for each k; decoding scores all codebooks every frame)."""
        weight, bias = self.joint_head()
        codec = slice(*self.vocab.modality_range("codec"))
        shape = (self.vocab.num_codebooks, self.vocab.codebook_size)
        rows = hidden.unsqueeze(-2) + self.stream_offsets  # [..., K, D]
        logits = torch.einsum("...kd,ksd->...ks", rows, weight[codec].view(*shape, -1))
        return logits if bias is None else logits + bias[codec].view(shape)

    def loss(self, frames: torch.Tensor, loss_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
             document_ids: torch.Tensor | None = None, heard: HeardTranscripts | None = None,
             features: HeardFeatures | None = None) -> LossOutput:
        """Next-frame loss on delayed `frames` `[B, N, S]`; `loss_mask` (delayed the same way) marks the
        cells that carry loss. In packed rows (`document_ids`), a frame never predicts the first frame
        of the next example. `heard`: transcripts of the audio the batch listens to, for the auxiliary
        CTC loss (added to the weighted sum; its per-token mean is logged as `ctc`); `features`: the
        continuous input path's features of the same steps."""
        cut = (lambda x: None if x is None else x[..., :-1])
        inputs = None if features is None else HeardFeatures(features.values[:, :-1], features.present[:, :-1])
        hidden = self.hidden_states(frames[..., :-1], cut(position_ids), cut(document_ids), inputs)
        out = multistream_loss(self, hidden, frames[..., 1:], next_frame_mask(loss_mask, document_ids), frames[:, 0, :-1])
        if heard is not None and heard.rows:
            asked = hidden if heard.layer == "output" else self.heard_adapter_output(inputs, hidden.dtype)
            ctc_sum, per_token = heard_ctc_loss(self, asked, heard)
            out.weighted_sum = out.weighted_sum + ctc_sum
            out.loss = out.weighted_sum / max(out.frames, 1)
            out.per_stream["ctc"] = per_token
        return out
