"""Scoring base models and adapters on tasks, with the LoRA Land metric family.

``metrics`` and ``parsing`` are pure and table-tested; ``generate`` runs batched greedy
generation on any causal LM (a PeftModel scores its base with the adapter disabled, so
one copy of the weights serves every row of the comparison); ``scoring`` ties them
together; ``commands`` is ``loraland eval``. Tasks and data come from :mod:`loraland.data`.
"""
