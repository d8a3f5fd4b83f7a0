"""Secrets kept out of everything auflow writes: logs, errors, summary.json, manifest.json, JSONL.

A camera URL often carries its password (``rtsp://admin:PASSWORD@10.0.0.5/live``) or a token in its
query (``...?user=admin&password=...``). :func:`redact_uri` masks both in one URI;
:func:`redact_text` masks every URL it finds inside free text (an FFmpeg error that repeats the URL,
a traceback line); :class:`RedactingFilter` applies it to every log record a handler emits.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
#: query parameters whose values are secrets (matched case-insensitively, as whole names)
SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "token", "access_token", "auth", "key", "apikey", "api_key",
                 "secret", "signature", "sig", "credential", "credentials")
# the value runs to the next parameter, fragment or space; a ':' before a space ends it ("...?token=X: cannot connect")
_PARAM = re.compile(r"(?i)(?<=[?&;])(" + "|".join(SECRET_PARAMS) + r")=([^&;#\s]*?)(?=[&;#\s]|:(?:\s|$)|$)")
# scheme://userinfo@ — userinfo up to the last '@' of the URL, so a password with a raw '@', '/' or '?' (which
# should have been percent-encoded) is masked whole rather than cut where a URL parser would cut it
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s@]*(?:@[^\s@]*)*)@")


def _mask_userinfo(m: re.Match) -> str:
    user, colon, _ = m.group(2).partition(":")
    return f"{m.group(1)}{user}:{MASK}@" if colon else m.group(0)


def redact_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` and every secret query value
    masked (``rtsp://admin:***@host/live?token=***``)."""
    if "://" not in text and "=" not in text:
        return text
    return _PARAM.sub(lambda m: f"{m.group(1)}={MASK}", _USERINFO.sub(_mask_userinfo, text))


def redact_uri(uri: str) -> str:
    """The URI with its password and secret query values replaced by ``***`` (for logs and outputs).

    The whole string is one URI here, so a password with characters a URL may not hold raw (a space,
    '#', '/', '@') is masked whole: everything between ``user:`` and the URI's last '@'.
    """
    if "://" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        user = rest[:at].split(":", 1)[0]
        rest = f"{user}:{MASK}{rest[at:]}"
    return redact_text(f"{scheme}://{rest}")


class RedactingFilter(logging.Filter):
    """Masks secrets in each record's final message (arguments merged in), on the handler it is added to."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report
            return True
        clean = redact_text(msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


__all__ = ["MASK", "RedactingFilter", "redact_text", "redact_uri"]
