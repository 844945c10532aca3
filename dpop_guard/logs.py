"""Logging set-up that shows the guard's refusals and outages: a JSON formatter and a
``logging.config.dictConfig`` dictionary (:func:`logging_config`, also
``dpop_guard.logging_config``).

**Why it is needed.** The guard logs a refusal at INFO on the ``dpop_guard`` logger, and an
outage (once per circuit-breaker transition) at WARNING on ``dpop_guard.introspection``.
Uvicorn's default configuration gives handlers to its own loggers only, so INFO records of
any other logger go nowhere, and WARNING ones reach Python's last-resort handler as a bare
message without their fields.

**Why refusals stay at INFO.** A refusal is the guard doing its job, and most are part of
the protocol's normal flow: every client of a nonce route gets one ``use_dpop_nonce`` 401
first, and an expired token's 401 is how a client learns to refresh. WARNING is kept for
what an operator must act on (an outage, its recovery, a replay store that lost its
memory, a start-up degraded), so that alerting on WARNING does not page on routine or
attacker-made traffic (anyone on the internet can cause a 401 per request). Show refusals
by configuring the level, which this module does.

**What a record holds.** A refusal record carries, as ``extra`` fields: the outcome, the
internal reason and the wire ``error``, the status, the method, the path (never the query
string: it may carry anything), the peer's address, the token's client id and subject
when the token was looked up, the time spent and the FAPI interaction id. Never a token, a
proof, an ``Authorization`` or ``DPoP`` header, or a secret.

For example, with uvicorn::

    uvicorn.run(app, log_config=dpop_guard.logging_config())

or on the command line, ``uvicorn app:app --log-config logging.json`` with the file
written by ``python -c "import json, dpop_guard; print(json.dumps(dpop_guard.logging_config()))"``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final, Literal

__all__ = ["JSONFormatter", "logging_config"]

# The attributes every LogRecord has; anything else on a record came as `extra`.
_STANDARD: Final = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
        "message",
        "asctime",
        "taskName",
        "color_message",  # uvicorn's coloured copy of the message
    }
)


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ISO 8601 with
    milliseconds), ``level``, ``logger``, ``message``, every ``extra`` field under its own
    name (the guard's are ``dpop_guard_*``; ``None`` values are left out), and
    ``exception`` when the record carries one (the guard's never do: see
    :func:`dpop_guard._decision.log_unexpected`). Values JSON cannot hold are written as
    their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and value is not None and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO",
    *,
    json_lines: bool = True,
    uvicorn: bool = True,
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary under which the guard's refusals and
    outages are visible.

    :param level: the ``dpop_guard`` loggers' level: ``INFO`` shows refusals (one record
        per refused request) and outages; ``WARNING`` only outages and start-up problems;
        ``DEBUG`` adds a record per accepted request.
    :param json_lines: one JSON object per line (:class:`JSONFormatter`), for a log
        pipeline; ``False``: plain text lines ``time level logger message``, with the
        refusal's fields in the message.
    :param uvicorn: also configure uvicorn's loggers (``uvicorn``, ``uvicorn.error``,
        ``uvicorn.access``) as uvicorn's default does, with the same formatter, so the
        dictionary can replace uvicorn's own (``log_config=``, ``--log-config``).
        Uvicorn's access lines hold the full request target, query string included.

    Loggers not named here keep their configuration (``disable_existing_loggers`` is
    ``False``).
    """
    formatter = "json" if json_lines else "plain"
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JSONFormatter"},
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "dpop_guard": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }
    if uvicorn:
        config["handlers"]["uvicorn_access"] = {
            "class": "logging.StreamHandler",
            "formatter": formatter,
            "stream": "ext://sys.stdout",
        }
        config["loggers"].update(
            {
                "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "uvicorn.error": {"level": "INFO"},
                "uvicorn.access": {
                    "handlers": ["uvicorn_access"],
                    "level": "INFO",
                    "propagate": False,
                },
            }
        )
    return config
