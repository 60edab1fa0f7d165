"""Pydantic models of every HTTP wire format (TGI/LoRAX, OpenAI, admin). No I/O."""
