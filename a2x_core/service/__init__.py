"""``a2x serve``: the model behind a NIM-compatible gRPC service and a local HTTP API
(``docs/service.md``). Needs the ``serve`` extra (grpcio, protobuf, fastapi, uvicorn)."""
