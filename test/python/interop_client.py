"""One call to the stream service with Python grpcio, for test/python-interop.test.ts.

Usage: interop_client.py TARGET SPEC_JSON, with the generated stubs on
PYTHONPATH. SPEC is {"op": "stream" | "check", ...} ("metadata": [[key, value]]
adds request metadata to a stream); the outcome is printed as
JSON lines: one {"message", "counter"} per message received, then
{"code": "OK" | "<grpc status name>", "details": "..."}. The test decides
what is right; this script only reports what grpcio saw.
"""

import json
import sys

import grpc
from google.protobuf.duration_pb2 import Duration

from stream.v1 import stream_pb2, stream_pb2_grpc

# Generated from a copy of grpc/health/v1/health.proto under another import
# path: a top-level "grpc" package of our own would shadow grpcio itself.
from grpc_health_v1 import health_pb2, health_pb2_grpc


def emit(obj):
    print(json.dumps(obj), flush=True)


def stream(channel, spec):
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    request = stream_pb2.StreamRequest(
        name=spec.get("name", ""),
        limit=spec.get("limit", 0),
        start_at=spec.get("start_at", 0),
    )
    if "interval_ms" in spec:
        interval = Duration()
        interval.FromMilliseconds(spec["interval_ms"])
        request.interval.CopyFrom(interval)
    # Metadata as [[key, value], ...]: a traceparent, say, as other services' clients send it.
    metadata = tuple((k, v) for k, v in spec.get("metadata", []))
    call = stub.Stream(request, timeout=spec.get("timeout"), metadata=metadata or None)
    received = 0
    try:
        for m in call:
            emit({"message": m.message, "counter": m.counter})
            received += 1
            if received == spec.get("cancel_after"):
                call.cancel()
        emit({"code": "OK", "details": ""})
    except grpc.RpcError as e:
        emit({"code": e.code().name, "details": e.details() or ""})


def check(channel, spec):
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        res = stub.Check(health_pb2.HealthCheckRequest(service=spec.get("service", "")), timeout=5)
        emit({"status": health_pb2.HealthCheckResponse.ServingStatus.Name(res.status), "code": "OK", "details": ""})
    except grpc.RpcError as e:
        emit({"code": e.code().name, "details": e.details() or ""})


def main():
    target, spec = sys.argv[1], json.loads(sys.argv[2])
    with grpc.insecure_channel(target) as channel:
        {"stream": stream, "check": check}[spec["op"]](channel, spec)


if __name__ == "__main__":
    main()
