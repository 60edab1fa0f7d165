"""Request validation: sampling checks, TGI/OpenAI wire models, stop text, config."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.serving.config import ServerConfig, parse_adapter_list
from loraland.serving.errors import ServerConfigError
from loraland.serving.params import Limits, SamplingParams, check_sampling
from loraland.serving.stoptext import StopStreamer, safe_prefix_len, strip_stop
from loraland.serving.wire.openai import ChatRequest, CompletionRequest
from loraland.serving.wire.tgi import TGIRequest
from pydantic import ValidationError

LIMITS = Limits(max_input_tokens=10, max_total_tokens=20, max_stop_sequences=2)


def test_check_sampling_names_each_bad_field() -> None:
    params = SamplingParams(
        max_new_tokens=0, temperature=0.0, top_k=0, top_p=1.5, stop=("a", "b", "c")
    )
    fields = {p.param for p in check_sampling(params, LIMITS)}
    assert fields == {"max_new_tokens", "temperature", "top_k", "top_p", "stop"}
    assert check_sampling(SamplingParams(), LIMITS) == []


def test_tgi_request_accepts_what_clients_send_and_refuses_unsupported() -> None:
    body = TGIRequest.model_validate(
        {
            "inputs": "hi",
            "parameters": {
                "best_of": None,
                "details": True,
                "do_sample": False,
                "max_new_tokens": 5,
                "repetition_penalty": None,
                "return_full_text": False,
                "seed": None,
                "stop": [],
                "temperature": None,
                "top_k": None,
                "top_p": None,
                "truncate": None,
                "typical_p": None,
                "watermark": False,
                "decoder_input_details": False,
                "top_n_tokens": None,
                "grammar": None,
                "adapter_id": "a",
                "adapter_source": None,
                "merged_adapters": None,
                "api_token": None,
                "ignore_eos_token": False,
                "response_format": None,
                "return_k_alternatives": None,
                "frequency_penalty": None,
            },
            "stream": False,
        }
    )
    assert body.parameters.unsupported() is None
    assert body.parameters.sampling(20).max_new_tokens == 5
    assert (
        TGIRequest.model_validate(
            {"inputs": "x", "parameters": {"best_of": 2}}
        ).parameters.unsupported()
        == "best_of"
    )
    with pytest.raises(ValidationError):
        TGIRequest.model_validate({"inputs": "", "parameters": {}})
    with pytest.raises(ValidationError):
        TGIRequest.model_validate({"inputs": "x", "parameters": {"unknown_field": 1}})


def test_openai_sampling_semantics() -> None:
    greedy = CompletionRequest.model_validate(
        {"model": "m", "prompt": "x", "temperature": 0}
    ).sampling()
    assert not greedy.sampling and greedy.max_new_tokens == 16
    default = CompletionRequest.model_validate(
        {"model": "m", "prompt": "x", "stop": "."}
    ).sampling()
    assert default.sampling and default.stop == (".",)
    assert (
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "n": 2}).unsupported() == "n"
    )
    chat = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}
    )
    assert chat.messages[0].text() == "a"
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({"model": "m", "messages": []})


def test_stop_text_for_openai() -> None:
    assert strip_stop("hello END", ["END"]) == "hello "
    assert safe_prefix_len("abc EN", ["END"]) == 4
    assert safe_prefix_len("abc END more", ["END"]) == 4
    streamer = StopStreamer(["###"])
    pieces = [streamer.push(p) for p in ["Hi", " #", "#", "#", " x"]]
    assert "".join(pieces) == "Hi "
    assert streamer.finish("Hi ###", stopped=True) == ""
    streamer = StopStreamer(["###"])
    assert streamer.push("a #") == "a "
    assert streamer.finish("a #b", stopped=False) == "#b"


def test_server_config_limits_and_names(tmp_path: Path) -> None:
    config = ServerConfig.build(
        {"baseModel": "builtin://smollm2-135m-instruct", "maxLoadedAdapters": 3}
    )
    assert config.max_loaded_adapters == 3 and config.model_id == "smollm2-135m-instruct"
    assert config.batch_token_budget == config.max_batch_size * config.max_total_tokens
    with pytest.raises(ServerConfigError, match="max_input_tokens"):
        ServerConfig.build({"base_model": "x", "max_input_tokens": 100, "max_total_tokens": 50})
    with pytest.raises(ServerConfigError, match="unique"):
        ServerConfig.build(
            {
                "base_model": "x",
                "adapters": [{"name": "a", "uri": "/a"}, {"name": "a", "uri": "/b"}],
            }
        )
    with pytest.raises(ServerConfigError, match="adapter name"):
        ServerConfig.build({"base_model": "x", "adapters": [{"name": "../a", "uri": "/a"}]})
    file = tmp_path / "serve.yaml"
    file.write_text("base_model: builtin://smollm2-135m-instruct\nport: 9000\n")
    assert ServerConfig.from_file(file, {"port": 9001}).port == 9001
    file.write_text("port: [")
    with pytest.raises(ServerConfigError, match=r"serve\.yaml"):
        ServerConfig.from_file(file)


def test_adapter_list_file_format() -> None:
    assert [a.name for a in parse_adapter_list([{"name": "a", "uri": "/a"}], "f")] == ["a"]
    assert parse_adapter_list({"adapters": None}, "f") == []
    with pytest.raises(ServerConfigError, match="list"):
        parse_adapter_list("nope", "f")
    with pytest.raises(ServerConfigError):
        parse_adapter_list([{"name": "a"}], "f")
