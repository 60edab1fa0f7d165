"""The adapter agent: a sidecar that gives vLLM and LoRAX pods loraland's adapter handling.

``loraland agent`` runs beside the server in each pod of an AdapterDeployment with
``runtime: vllm`` or ``lorax``. It watches the adapters ConfigMap (a mounted file, as the
builtin server does), stages every adapter from any URI loraland reads into a volume the
server shares (:mod:`loraland.agent.stage`), loads it into its own pod's server through
that server's API (:mod:`loraland.agent.servers`), unloads removed ones, and answers
``GET /ready`` with 200 only once every required adapter is loaded
(:mod:`loraland.agent.state` decides; :mod:`loraland.agent.app` serves).
"""
