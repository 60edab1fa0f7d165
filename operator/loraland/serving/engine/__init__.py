"""The inference engine: scheduler (pure), batch state and KV cache, sampling, step loop."""
