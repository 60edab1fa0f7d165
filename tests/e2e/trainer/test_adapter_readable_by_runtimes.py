"""A trained adapter's adapter_config.json, read the way PEFT, LoRAX and vLLM read it.

PEFT: ``AutoPeftModelForCausalLM.from_pretrained(adapter_dir)`` loads the base model from
``base_model_name_or_path`` alone, so that field must name something loadable (it was a
loraland URI, ``builtin://...``, which nothing but loraland reads).

LoRAX 0.12.1 (github.com/predibase/lorax at tag v0.12.1):
- ``server/lorax_server/adapters/lora.py:76``: ``peft.LoraConfig.from_pretrained(adapter_id)``
  (run here with the same peft API);
- ``server/lorax_server/utils/adapter.py:166``: when ``base_model_name_or_path`` differs
  from ``--model-id`` it calls ``check_architectures``, which at lines 127-129 runs
  ``AutoConfig.from_pretrained(base_model_name_or_path)`` (run here with transformers).

vLLM 0.33.0 (sdist on PyPI), ``vllm/lora/peft_helper.py``: ``from_local_dir`` (176-186)
reads the JSON; ``from_dict`` (156-174) requires ``r``, ``lora_alpha`` and
``target_modules`` (the fields without defaults, 28-30); ``validate_legal`` (188-200)
refuses ``modules_to_save`` other than classifier/score, DoRA, ``lora_bias``, an
``init_lora_weights`` string outside its list, ``bias`` other than "none", and a rank
above ``--max-lora-rank``. vLLM does not install beside our torch, so those checks are
restated below against the file the trainer wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from loraland.controller.upstream import VLLM_MAX_LORA_RANKS

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("readable")
    job = {
        "apiVersion": "loraland.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "readable"},
        "spec": {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "dataset": {"task": "intents", "maxSamples": 16},
            "lora": {"rank": 8, "alpha": 16},
            "training": {"maxSteps": 1, "batchSize": 2, "maxSeqLength": 32, "seed": 1},
            "evaluation": {"maxSamples": 2, "batchSize": 2, "compareBase": False},
            "output": {"uri": str(root / "adapter")},
        },
    }
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    done = subprocess.run(
        [sys.executable, "-m", "loraland.cli", "finetune", "-f", str(root / "job.yaml"),
         "--work-dir", str(root / "work")],
        capture_output=True, text=True, timeout=1400,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "adapter"


def _config(adapter: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((adapter / "adapter_config.json").read_text())
    return config


def test_base_name_is_readable_and_the_uri_is_kept(adapter: Path, base_model_dir: Path) -> None:
    config = _config(adapter)
    assert "://" not in config["base_model_name_or_path"]
    assert Path(config["base_model_name_or_path"]) == base_model_dir
    metadata = json.loads((adapter / "loraland.json").read_text())
    assert metadata["base_model"] == "builtin://smollm2-135m-instruct"


def test_peft_alone_loads_it(adapter: Path) -> None:
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(adapter))
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_lorax_reads_it(adapter: Path) -> None:
    from peft import LoraConfig
    from transformers import AutoConfig

    hf_config = LoraConfig.from_pretrained(str(adapter))  # lora.py:76
    assert hf_config.r == 8 and hf_config.lora_alpha == 16
    # check_architectures (adapter.py:127-129): the named base has a readable config.
    base = AutoConfig.from_pretrained(hf_config.base_model_name_or_path)
    assert base.architectures == ["LlamaForCausalLM"]


def test_vllm_reads_it(adapter: Path) -> None:
    config = _config(adapter)
    assert {"r", "lora_alpha", "target_modules"} <= set(config)  # peft_helper.py:28-30
    assert not config.get("modules_to_save")
    assert not config.get("use_dora") and not config.get("lora_bias")
    assert config.get("bias", "none") == "none"
    init = config.get("init_lora_weights", True)
    assert not isinstance(init, str) or init.lower() in (
        "gaussian", "eva", "orthogonal", "mica", "lora_ga"
    )  # fmt: skip
    ranks = [config["r"], *(config.get("rank_pattern") or {}).values()]
    assert max(ranks) <= max(VLLM_MAX_LORA_RANKS)
