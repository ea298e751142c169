"""A real gRPC server (grpcio, h2c) for tests/grpc.rs.

Service test.Echo, with raw-bytes messages (no protobuf codegen needed):
  Unary       answers the request bytes, with trailing metadata x-trailer: kept
  Bidi        answers every message as it arrives (bidirectional streaming), same trailer
  Fail        aborts with NOT_FOUND "nothing here" (a status in the trailers)
Usage: server.py PORT. Prints "ready" once listening; stops on SIGTERM or stdin EOF.
"""
import sys
import threading
from concurrent import futures

import grpc


def unary(request, context):
    context.set_trailing_metadata((("x-trailer", "kept"),))
    return request


def bidi(request_iterator, context):
    context.set_trailing_metadata((("x-trailer", "kept"),))
    for message in request_iterator:
        yield b"echo:" + message


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")


def identity(b):
    return b


def main():
    port = int(sys.argv[1])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, identity, identity),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, identity, identity),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    # The test holds stdin open; its end (the test process gone) stops the server.
    threading.Thread(target=lambda: (sys.stdin.read(), server.stop(0)), daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
