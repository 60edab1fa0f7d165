"""The server a user would write without loraland: transformers + peft, one request at a time.

One PeftModel holding every adapter; each request takes a global lock, calls
``set_adapter`` and ``generate`` (streaming each token as ``generate`` makes it, so time to
first token is measured the same way as for loraland), then releases the lock.
Speaks just enough of TGI's ``/generate_stream`` for the benchmark client.

    python naive_server.py --base-dir DIR --adapter NAME=PATH ... --port N
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
from collections.abc import Iterator

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from peft import PeftModel
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer


class TokenQueue(BaseStreamer):
    """Hands each generated token id over as soon as generate() produces it."""

    def __init__(self) -> None:
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.queue.put(int(token))

    def end(self) -> None:
        self.queue.put(None)


class Parameters(BaseModel):
    adapter_id: str | None = None
    max_new_tokens: int = 20
    ignore_eos_token: bool = False


class Body(BaseModel):
    inputs: str
    parameters: Parameters = Parameters()


def build(base_dir: str, adapters: dict[str, str]) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    names = list(adapters)
    peft_model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(adapters[name], adapter_name=name)
    peft_model.eval()
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/generate_stream")
    def generate_stream(body: Body) -> StreamingResponse:
        def events() -> Iterator[str]:
            with lock:  # one request at a time
                p = body.parameters
                ids = tokenizer(body.inputs, return_tensors="pt").input_ids
                streamer = TokenQueue()
                kwargs = {
                    "input_ids": ids,
                    "max_new_tokens": p.max_new_tokens,
                    "min_new_tokens": p.max_new_tokens if p.ignore_eos_token else 0,
                    "do_sample": False,
                    "streamer": streamer,
                }

                def run() -> None:
                    with torch.no_grad():
                        if p.adapter_id:
                            peft_model.set_adapter(p.adapter_id)
                            peft_model.generate(**kwargs)
                        else:
                            with peft_model.disable_adapter():
                                peft_model.generate(**kwargs)

                worker = threading.Thread(target=run)
                worker.start()
                while (token := streamer.queue.get()) is not None:
                    yield "data:" + json.dumps({"token": {"id": token}}) + "\n\n"
                worker.join()
                yield (
                    "data:" + json.dumps({"generated_text": "", "details": {"done": True}}) + "\n\n"
                )

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
