"""FineTuneStudy without Kubernetes: the matrix, the leaderboard, the report, the local runner.

``matrix`` and ``leaderboard`` are pure and shared with the operator; ``report`` and
``plots`` turn a :class:`~loraland.api.studystatus.StudyTable` into the LoRA Land style
report; ``local`` runs a study on one machine through ``loraland finetune``.
"""
