"""The grpc.aio adapter: serves each Runner as a method of the grpc.aio server.

Each unary method is served to grpc.aio as a stream-unary one of raw bytes, and the pipeline reads
the one request message itself (`single_message`): grpc.aio 1.85 never answers a unary call that
half-closes without a whole message (an empty body, a frame cut short), it leaves the stream open
until the client goes away; a request stream simply ends, and the call gets INVALID_ARGUMENT at
once. Reading it in the pipeline also bounds how long a request may take to arrive, and lets the
pipeline parse the message, so that one that does not parse is its error to map (grpc would
answer UNKNOWN with the parser's exception text).
"""

from __future__ import annotations  # grpc-stubs makes these generic; grpcio's classes are not

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from server.logs import REQUEST_ID
from server.transport import request_ids
from server.transport.asgi import via_envoy
from server.transport.pipeline import Call, Runner, metadata_values, single_message
from server.transport.status import STATUS_DETAILS_KEY


def method_handlers(
    runners: Iterable[Runner], read_timeout_s: float
) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """One generic handler per service, for `grpc.aio.Server.add_generic_rpc_handlers`."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = defaultdict(dict)
    for runner in runners:
        service, _, name = runner.method[1:].partition("/")
        by_service[service][name] = grpc.stream_unary_rpc_method_handler(_serve(runner, read_timeout_s))
    return [
        grpc.method_handlers_generic_handler(service, handlers) for service, handlers in by_service.items()
    ]


def _serve(runner: Runner, read_timeout_s: float) -> Any:
    async def behaviour(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        metadata = tuple(context.invocation_metadata() or ())
        sent = metadata_values(metadata, request_ids.HEADER)
        request_id = request_ids.choose(sent[0] if sent else None)
        REQUEST_ID.set(request_id)  # grpc.aio serves each call in a task of its own
        peer = context.peer()
        if peer.startswith("unix:"):  # the private socket only the service's own Envoy can open
            peer = via_envoy(metadata_values(metadata, "x-forwarded-for"))
        call = Call(runner.method, "grpc", metadata, peer)
        outcome = await runner.run(call, lambda: single_message(requests, read_timeout_s))
        # Then, not first: the headers go out with the answer (an error is then no longer
        # trailers-only, which every gRPC client reads alike).
        await context.send_initial_metadata(((request_ids.HEADER, request_id),))
        if outcome.response is not None:
            return outcome.response.SerializeToString()
        details = b"" if outcome.status is None else outcome.status.SerializeToString()
        await context.abort(outcome.code, outcome.message, trailing_metadata=((STATUS_DETAILS_KEY, details),))
        raise AssertionError("abort returns only by raising")

    return behaviour
