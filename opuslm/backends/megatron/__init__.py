"""The Megatron-Core backend: the multi-stream model around Megatron's GPT decoder (tensor parallel),
weight conversion to and from the HF backbone, and a training stage that runs on it.

- `cpu.py`: the CUDA-only calls of megatron-core, redirected when no GPU is present;
- `parallel.py`: the process groups (tensor x pipeline x data);
- `convert.py`: HF <-> Megatron weights, tensor-parallel split and merge (pure functions);
- `model.py`: `MegatronOpusLM`, the same multi-stream parts as `opuslm.model.multistream`;
- `stage.py`: the trainer's model, wrapping, clipping and checkpoint parts for this backend.
"""
