"""The gRPC front end: ``loraland_serving.proto``, its generated code, a thin servicer."""
