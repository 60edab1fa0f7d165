"""The server a user would write without loraland: transformers + peft, one request at a time.

One PeftModel holding every adapter; each request takes a global lock, calls
``set_adapter`` and ``generate`` (streaming each token as ``generate`` makes it, so time to
first token is measured the same way as for loraland), then releases the lock. One
courtesy a quick server might skip: a request whose client has gone stops generating,
so requests the benchmark abandons at the end of a window cost it nothing. Speaks just
enough of TGI's ``/generate_stream`` for the benchmark client.

    python naive_server.py --base-dir DIR --adapter NAME=PATH ... --port N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import AsyncIterator

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from peft import PeftModel
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer


class Parameters(BaseModel):
    adapter_id: str | None = None
    max_new_tokens: int = 20
    ignore_eos_token: bool = False


class Body(BaseModel):
    inputs: str
    parameters: Parameters = Parameters()


class Cancelled(StoppingCriteria):
    """Stops generate() once the client has gone (so abandoned requests cost nothing)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> bool:
        return self.event.is_set()


def build(base_dir: str, adapters: dict[str, str]) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    names = list(adapters)
    peft_model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(adapters[name], adapter_name=name)
    peft_model.eval()
    lock = threading.Lock()  # one request at a time
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/generate_stream")
    async def generate_stream(body: Body) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[int | None] = asyncio.Queue()
        gone = threading.Event()

        class ToLoop(BaseStreamer):
            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: torch.Tensor) -> None:
                if not self.prompt_seen:  # generate() first passes the prompt
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    loop.call_soon_threadsafe(tokens.put_nowait, int(token))

            def end(self) -> None:
                loop.call_soon_threadsafe(tokens.put_nowait, None)

        def run() -> None:
            p = body.parameters
            ids = tokenizer(body.inputs, return_tensors="pt").input_ids
            kwargs = {
                "input_ids": ids,
                "max_new_tokens": p.max_new_tokens,
                "min_new_tokens": p.max_new_tokens if p.ignore_eos_token else 0,
                "do_sample": False,
                "streamer": ToLoop(),
                "stopping_criteria": StoppingCriteriaList([Cancelled(gone)]),
            }
            with lock, torch.no_grad():
                if gone.is_set():
                    loop.call_soon_threadsafe(tokens.put_nowait, None)
                    return
                if p.adapter_id:
                    peft_model.set_adapter(p.adapter_id)
                    peft_model.generate(**kwargs)
                else:
                    with peft_model.disable_adapter():
                        peft_model.generate(**kwargs)

        threading.Thread(target=run, daemon=True).start()

        async def events() -> AsyncIterator[str]:
            try:
                while (token := await tokens.get()) is not None:
                    yield "data:" + json.dumps({"token": {"id": token}}) + "\n\n"
                yield (
                    "data:" + json.dumps({"generated_text": "", "details": {"done": True}}) + "\n\n"
                )
            finally:
                gone.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-dir", required=True)
    parser.add_argument("--adapter", action="append", default=[])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    adapters = dict(a.split("=", 1) for a in args.adapter)
    uvicorn.run(
        build(args.base_dir, adapters), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
