"""The service's fixed limits, each written once. The configurable ones are in config.py."""

# The largest request: a protobuf message (gRPC, grpc-web), a JSON body (Envoy), a token form.
MAX_REQUEST_BYTES = 64 * 1024
# The most metadata a call may carry, counted as HTTP/2 counts a header list.
MAX_METADATA_BYTES = 16 * 1024
# What the front doors themselves let through (Envoy, grpc core and uvicorn each have a limit of
# their own): well above MAX_METADATA_BYTES, so that a call with up to this much in headers gets
# the service's own RESOURCE_EXHAUSTED with its reason, on every transport. Past it the front door
# refuses the call itself (HTTP 431, or grpc core's RESOURCE_EXHAUSTED).
MAX_HEADER_BYTES = 128 * 1024
