"""A real gRPC client (grpcio) for tests/grpc.rs: one call through tollgate's h2c listener.

Usage: client.py HOST:PORT API_KEY unary|bidi
Prints one line: the status code name, then the answers (unary) or the streamed answers (bidi),
comma-separated, then the x-trailer trailing metadata.
"""
import sys

import grpc


def identity(b):
    return b


def main():
    target, key, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    metadata = (("x-api-key", key),) if key else ()
    with grpc.insecure_channel(target) as channel:
        try:
            if kind == "unary":
                call = channel.unary_unary("/test.Echo/Unary", identity, identity)
                answer, info = call.with_call(b"hello", metadata=metadata, timeout=10)
                answers = [answer]
            else:
                call = channel.stream_stream("/test.Echo/Bidi", identity, identity)
                info = call(iter([b"a", b"b", b"c"]), metadata=metadata, timeout=10)
                answers = list(info)
            trailer = dict(info.trailing_metadata() or ()).get("x-trailer", "")
            print("OK", b",".join(answers).decode(), trailer)
        except grpc.RpcError as e:
            print(e.code().name, e.details())


if __name__ == "__main__":
    main()
