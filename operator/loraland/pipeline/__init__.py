"""The fine-tune pipeline: data -> train -> score -> publish -> result.

It sits above :mod:`loraland.trainer` and :mod:`loraland.evaluation` (which must not
import each other) and joins them: ``loraland finetune`` and every FineTuneJob pod run
:func:`loraland.pipeline.finetune.run_finetune`.
"""
