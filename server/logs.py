"""The service's log lines: text for people (the default), or one JSON object a line for a log
pipeline (MS_LOG_FORMAT=json, with the process id too: MS_WORKERS runs several), and the request
id that ties a call's lines together.

Every line a call writes carries its request id: the transports set REQUEST_ID when a call
arrives (transport/request_ids.py), and a filter on the handler copies it into each record. Access
lines add their fields as the record's extras (ACCESS_FIELDS); the JSON format writes exactly those
fields and no others, so that nothing else a record holds can reach the log by accident.
"""

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

# The request id of the call being served, "-" outside any call.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
# The fields of an access line, beside time, level, logger, message and request_id.
ACCESS_FIELDS = ("method", "transport", "code", "duration_ms", "caller", "peer")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,  # which worker, with MS_WORKERS
        }
        for name in ACCESS_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(level: str, log_format: str) -> None:
    """The root logger's one handler, on stderr, in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == JSON else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
