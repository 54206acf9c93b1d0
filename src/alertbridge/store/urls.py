"""Store URLs as they may be shown: a password never reaches a log line, an error or the terminal."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&\s]*")


def masked(url: str) -> str:
    """`postgresql://app:s3cret@db/alertbridge` → `postgresql://app:***@db/alertbridge`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None and not _QUERY_PASSWORD.search(parts.query):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(message: str, url: str) -> str:
    """An error message from the driver with the URL's password (if any) taken out."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    message = message.replace(url, masked(url))
    if password:
        message = message.replace(password, "***")
    return message
