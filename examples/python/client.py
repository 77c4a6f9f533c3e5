"""A small Python grpcio client for stream.v1.StreamService.

Run it with examples/python/run.sh, which generates the stubs from proto/
first. It prints each greeting and, when the connection drops or the server
shuts down, reconnects and resumes with start_at = last counter + 1.
"""

import argparse
import sys
import time

import grpc
from google.protobuf.duration_pb2 import Duration

from stream.v1 import stream_pb2, stream_pb2_grpc

# Statuses worth a retry: the server went away or is restarting.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:8080", help="host:port of the server")
    p.add_argument("--name", default="Python")
    p.add_argument("--limit", type=int, default=5, help="messages to receive; 0 means forever")
    p.add_argument("--interval-ms", type=int, default=1000)
    p.add_argument("--retries", type=int, default=3, help="reconnects after UNAVAILABLE")
    args = p.parse_args()

    interval = Duration()
    interval.FromMilliseconds(args.interval_ms)
    next_counter, received, retries = 0, 0, 0
    with grpc.insecure_channel(args.target) as channel:
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        while True:
            remaining = 0 if args.limit == 0 else args.limit - received
            request = stream_pb2.StreamRequest(
                name=args.name, interval=interval, limit=remaining, start_at=next_counter
            )
            try:
                for m in stub.Stream(request):
                    print(f"{m.counter}: {m.message}", flush=True)
                    next_counter, received = m.counter + 1, received + 1
                return 0
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or retries >= args.retries:
                    print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
                    return 1
                retries += 1
                print(f"reconnecting at {next_counter} after {e.code().name}", file=sys.stderr)
                time.sleep(min(2**retries * 0.1, 5))


if __name__ == "__main__":
    sys.exit(main())
