"""Multi-LoRA inference server: ``loraland serve``, the ``builtin`` runtime.

Layers, from the wire inwards:

- ``http/`` (FastAPI: TGI/LoRAX, OpenAI, admin, metrics) and ``grpc/`` decode a request,
  call :class:`loraland.serving.service.GenerationService`, and encode the answer.
- ``service`` validates and tokenizes, pins the adapter, submits to the engine and turns
  engine events into results or streams.
- ``engine/`` runs the step loop: a pure scheduler decides which waiting requests join
  the running batch under a token budget; the batch holds a left-padded KV cache; every
  step decodes one token for every running row, whatever adapter it uses.
- ``lora/`` keeps adapters: a torch-free registry (states, tiers, LRU, pins), loading and
  validation of PEFT directories, and the batched LoRA op that applies each row's own
  A/B in one computation.

Only ``engine/`` (except the scheduler), ``lora/`` (except the registry and paths) and the
server assembly import torch.
"""
