"""Load tests: what concurrent users of a TGI-compatible endpoint feel.

The seed's four measurements, per request, each recorded as a Locust request event so
Locust's own statistics, CSV files and web UI carry them:

- time to first token: request sent -> first token received;
- total request time: request sent -> last token received;
- token streaming time: first token -> last token;
- output tokens per second: output tokens / token streaming time (the seed writes this
  ratio upside down; we report tokens per second).

Users are closed-loop: each waits for its answer, then asks again. Answers with 429
(the server shedding load) are counted apart from failures.

Layout, pure parts first:

- ``options``: the suite's own flags (API, adapter mix, prompt and output lengths), one
  validated model built from Locust's parsed options;
- ``metrics``: timestamps of one streamed answer -> the four measurements -> events;
- ``sse``: server-sent-event framing and the TGI/LoRAX and OpenAI chunk shapes;
- ``adapters_mix`` and ``prompts``: which adapter and which prompt the next request uses;
- ``clients`` (HTTP, httpx) and ``grpc_client``: stream one answer and time it;
- ``users``: the Locust user class (the only module importing Locust, which patches the
  standard library through gevent when imported, so nothing else here imports it);
- ``report``, ``plots``, ``compare``: Locust CSVs -> per-level numbers -> markdown and PNG;
- ``sweep``: one headless Locust process per user count, then the report;
- ``k8s``: manifests for a distributed Locust (master + workers) inside a cluster;
- ``commands``: ``loraland loadtest ...``.
"""
