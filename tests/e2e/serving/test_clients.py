"""Unchanged client libraries against the server: text-generation, lorax-client, openai, gRPC."""

from __future__ import annotations

import grpc
import pytest
from serving_helpers import ServerProcess

PROMPT = "The capital of France is"


def test_text_generation_client(server: ServerProcess) -> None:
    from text_generation import Client

    client = Client(server.url, timeout=60)
    response = client.generate(PROMPT, max_new_tokens=6)
    assert response.details.generated_tokens == 6
    assert response.generated_text == "".join(t.text for t in response.details.tokens)
    streamed = list(client.generate_stream(PROMPT, max_new_tokens=6))
    assert [s.token.id for s in streamed] == [t.id for t in response.details.tokens]
    assert streamed[-1].generated_text == response.generated_text
    assert streamed[-1].details is not None and streamed[-1].details.finish_reason == "length"
    assert all(s.generated_text is None for s in streamed[:-1])
    # Per-request sampling: a seed reproduces the text; prompt logprobs on request.
    first = client.generate(PROMPT, max_new_tokens=6, do_sample=True, temperature=0.9, seed=5)
    again = client.generate(PROMPT, max_new_tokens=6, do_sample=True, temperature=0.9, seed=5)
    assert first.generated_text == again.generated_text and first.details.seed == 5
    detailed = client.generate(
        PROMPT, max_new_tokens=2, decoder_input_details=True, return_full_text=True
    )
    prefill = detailed.details.prefill
    assert [t.text for t in prefill] == ["The", " capital", " of", " France", " is"]
    assert prefill[0].logprob is None and all(t.logprob is not None for t in prefill[1:])
    assert detailed.generated_text.startswith(PROMPT)


def test_text_generation_client_errors(server: ServerProcess) -> None:
    from text_generation import Client
    from text_generation.errors import ValidationError

    with pytest.raises(ValidationError, match=r"max_total_tokens|at most"):
        Client(server.url, timeout=60).generate("word " * 400, max_new_tokens=4)


def test_lorax_client_with_adapter(server: ServerProcess) -> None:
    from lorax import Client

    client = Client(server.url, timeout=60)
    base = client.generate(PROMPT, max_new_tokens=8, details=True)
    tuned = client.generate(PROMPT, adapter_id="a3", max_new_tokens=8, details=True)
    assert tuned.details is not None and tuned.details.generated_tokens <= 8
    assert base.details is not None and tuned.details.prompt_tokens > 0
    # The adapter changes the distribution (the greedy text may or may not change).
    assert [t.logprob for t in tuned.details.tokens] != [t.logprob for t in base.details.tokens]
    stream = list(client.generate_stream(PROMPT, adapter_id="a3", max_new_tokens=8))
    assert stream[-1].generated_text == tuned.generated_text
    # An on-demand id under the adapter root (adapter_source "local").
    ondemand = client.generate(
        PROMPT, adapter_id="team/ondemand", adapter_source="local", max_new_tokens=8
    )
    again = client.generate(PROMPT, adapter_id="a2", max_new_tokens=8)
    assert ondemand.generated_text == again.generated_text  # the same files as a2


def test_openai_client(server: ServerProcess) -> None:
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    models = {m.id for m in client.models.list()}
    assert {"smollm2-135m-instruct", "a1", "a2", "a3", "a4"} <= models

    chat = client.chat.completions.create(
        model="a1",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens <= 8
    chunks = list(
        client.chat.completions.create(
            model="a1",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == chat.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    completion = client.completions.create(
        model="smollm2-135m-instruct", prompt=PROMPT, max_tokens=6, temperature=0
    )
    text = completion.choices[0].text
    assert text.startswith(" Paris")
    stopped = client.completions.create(
        model="smollm2-135m-instruct", prompt=PROMPT, max_tokens=6, temperature=0, stop=["."]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert "." not in stopped.choices[0].text and text.startswith(stopped.choices[0].text)
    pieces = client.completions.create(
        model="smollm2-135m-instruct",
        prompt=PROMPT,
        max_tokens=6,
        temperature=0,
        stop=["."],
        stream=True,
    )
    assert "".join(p.choices[0].text for p in pieces) == stopped.choices[0].text

    with pytest.raises(NotFoundError):
        client.completions.create(model="no-such-adapter", prompt=PROMPT, max_tokens=2)


def test_grpc(server: ServerProcess) -> None:
    from loraland.serving.grpc.generated import loraland_serving_pb2 as pb
    from loraland.serving.grpc.generated import loraland_serving_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.LoraServingStub(channel)
        assert stub.Health(pb.HealthRequest(), timeout=10).ready
        request = pb.GenerateRequest(
            inputs=PROMPT, parameters=pb.Parameters(adapter_id="a4", max_new_tokens=5)
        )
        unary = stub.Generate(request, timeout=60)
        streamed = list(stub.GenerateStream(request, timeout=60))
        assert [m.token.id for m in streamed] == [t.id for t in unary.tokens]
        assert streamed[-1].HasField("finished")
        assert streamed[-1].finished.generated_text == unary.generated_text
        assert unary.finished.finish_reason == pb.FINISH_REASON_LENGTH
        names = {a.name for a in stub.ListAdapters(pb.ListAdaptersRequest(), timeout=10).adapters}
        assert {"a1", "a4"} <= names
        with pytest.raises(grpc.RpcError) as missing:
            stub.Generate(
                pb.GenerateRequest(inputs=PROMPT, parameters=pb.Parameters(adapter_id="zz")),
                timeout=10,
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as invalid:
            stub.Generate(pb.GenerateRequest(inputs="", parameters=pb.Parameters()), timeout=10)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
