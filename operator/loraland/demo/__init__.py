"""``loraland demo``: the LoRA Land loop on one machine.

Train one adapter per synthetic task, score each against the base model, serve them all
from one ``loraland serve``, load-test the server with Locust, and write a report. Every
step is the same public CLI a user would type (``loraland finetune``, ``loraland serve``,
``loraland loadtest sweep``), run as a subprocess: the demo is a script over the product,
not a second implementation of it, and each step also runs alone with ``--step``.
"""
