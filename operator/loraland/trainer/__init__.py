"""LoRA / QLoRA fine-tuning of any causal LM: what every FineTuneJob pod runs.

Pure pieces first: ``encoding`` (prompt/completion -> tokens with the prompt masked out,
truncation counted), ``schedule`` (step count and the deterministic data order that makes
resuming exact), ``targets`` (default LoRA target modules per architecture and the
QLoRA preflight), ``stopping`` (SIGTERM turned into a checkpoint and exit 143). Then
the parts that touch torch and disk: ``checkpoint``, ``progress``, ``loop`` and ``run``
(load, adapt, train, save the PEFT adapter). The trainer never
imports :mod:`loraland.evaluation`; :mod:`loraland.pipeline` runs one after the other.
"""
