"""The service's fixed limits, each written once. The configurable ones are in config.py."""

# The largest request: a protobuf message (gRPC, grpc-web), a JSON body (Envoy), a revocation report.
MAX_REQUEST_BYTES = 64 * 1024
# The longest request target (path and query) on the HTTP port: a path with two ids and a query
# with a page token and a user-name prefix, each percent-encoded at its longest, come to about
# 16,000 bytes. Longer ones are refused before uvicorn decodes them (transport/h11_limits.py).
MAX_TARGET_BYTES = 20 * 1024
# The largest form at the OAuth endpoints: the longest client id and secret, each character of them
# percent-encoded UTF-8 (12 bytes at most), and the longest scope (3 bytes a character) come to
# 7,850 bytes; introspection and revocation add the token itself, a JWT of up to
# MAX_BEARER_TOKEN_LENGTH (8 KiB). Decoding a form is slow Python: 64 KiB of percent-escapes cost
# 8 ms, so 16 KiB about 2 ms.
MAX_TOKEN_FORM_BYTES = 16 * 1024
# The most metadata a call may carry, counted as HTTP/2 counts a header list.
MAX_METADATA_BYTES = 16 * 1024
# What the front doors themselves let through (Envoy, grpc core and uvicorn each have a limit of
# their own): well above MAX_METADATA_BYTES, so that a call with up to this much in headers gets
# the service's own RESOURCE_EXHAUSTED with its reason, on every transport. Past it the front door
# refuses the call itself (HTTP 431, or grpc core's RESOURCE_EXHAUSTED).
MAX_HEADER_BYTES = 128 * 1024

# What a caller may send as one identifier. Each is refused by its length before any other work is
# done on it (decoding, normalising, parsing, a store lookup), on every path that takes it: the
# work on a string grows with its length, and PRECIS's (server/user_names.py) with the square
# of a run of combining marks (20,000 of them in a client id cost 260 ms of the event loop, issue
# 28). Each limit is well above what the service issues or accepts, and checked where the value
# enters the domain as well as in the transport that reads it (SECURITY.md, "Denial of service
# without a credential").
MAX_USER_NAME_LENGTH = 200  # a user name, and so a client id and a user-name prefix
MAX_ID_LENGTH = 200  # an id of a user, an organisation, a secret, a token (at most 19 digits)
MAX_SECRET_LENGTH = 200  # a client secret: the service's are 65 characters, older ones 64
# An access token or a PAT: the service's opaque ones are 43 characters; a JWT access token with
# the longest scope and many role claims is a few kB (one longer is not issued: invalid_scope).
MAX_BEARER_TOKEN_LENGTH = 8192
# The longest page token this service gives (domain/paging.py): a 16-byte MAC and a position, the
# key of a user name of at most MAX_USER_NAME_LENGTH characters (case folding makes at most 3 of
# one, each at most 4 bytes of UTF-8), in base64.
MAX_PAGE_TOKEN_LENGTH = (16 + 3 * 4 * MAX_USER_NAME_LENGTH) * 4 // 3 + 4
# The token endpoint's `scope`: the supported scopes, each once, and organisation scopes.
MAX_SCOPE_LENGTH = 1000
# The values (members, elements, scalars) a JSON request body may hold. The conversion to protobuf
# is pure Python and runs before authentication: 12,000 strings in 60 KiB cost 23 ms. No request
# of the API has a tenth of this many.
MAX_JSON_VALUES = 1000
# A JWT assertion (RFC 7523): one signed with an RSA 8192 key, with the claims any client sends,
# is about 1.6 kB. Longer ones are refused before they are parsed.
MAX_ASSERTION_LENGTH = 4096
# A user's metadata (ZITADEL's user metadata): a key of at most 200 characters, as ZITADEL's; a
# value of at most MAX_METADATA_VALUE_BYTES bytes, and at most MAX_METADATA_KEYS keys per user
# (and so per call). The bounds keep a user's metadata, which introspection answers whole when a
# token asks for it, under about 30 KiB.
MAX_METADATA_KEY_LENGTH = 200
MAX_METADATA_VALUE_BYTES = 1024
MAX_METADATA_KEYS = 20
