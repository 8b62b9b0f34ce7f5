"""Secrets never leave the process: every message that may quote a setting or a library's error is
passed through `redact` before it is printed, logged, raised into Dagster or stored.

Two nets, because a library's message can quote a secret whole, in part, or re-encoded:
- the values of the secret-bearing environment variables (SECRET_SETTINGS, and those a caller
  names, such as a sink's `webhook_url_env`), with the pieces a parser might quote on its own: a
  URL's user information, its password, percent-decoded or not, and each part of a password
  split where an unescaped `@` or `:` would split it;
- credentials in any URL or connection string, whoever set them: `scheme://user:password@host`,
  libpq's `password=…`, an AWS secret in a query string, a Slack webhook's token path.

Validating a secret-bearing setting never quotes its value either: `describe_url_problem` says
what is wrong with a URL in words that name no part of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
# Settings whose whole value is a secret (the URL carries the password, the key is the key).
SECRET_SETTINGS = (
    "HEALTH_SYNC_POSTGRES_URL",
    "HEALTH_SOURCE_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
# A fragment shorter than this is not masked on its own: masking every "db" or "ab" would garble
# messages without protecting anything a reader could use.
MIN_FRAGMENT = 4
# A path or query segment this long is taken for a token (a webhook's, a presigned URL's) and masked;
# shorter ones (a database name, "services") stay readable.
TOKEN_LENGTH = 16

_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/?#'\"]*)@")
_KEYWORD_SECRETS = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"aws_secret_access_key|sig|signature)\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s'\"&;,)]+)",
    re.IGNORECASE)
_SLACK_HOOK = re.compile(r"(?P<host>hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+",
                         re.IGNORECASE)
# What a message shows to say where a password goes, in a URL's form: not a secret.
PLACEHOLDERS = {"password", MASK}


def url_fragments(value: str) -> set[str]:
    """The parts of a URL-like secret that an error message could quote on its own: the whole, its
    user information and password (as written and percent-decoded, and each piece of the password
    that an unescaped `@`, `:` or `/` would split off), and long tokens in its path or query."""
    fragments = {value, unquote(value)}
    rest = value.split("://", 1)[-1]
    if "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
        fragments |= {userinfo, unquote(userinfo)}
        for form in (password, unquote(password)):
            # Cut where a parser would: at '@' alone (the host's start), or at any of '@', ':', '/'.
            fragments |= {form, *form.split("@"), *re.split(r"[@:/]", form)}
    if "/" in rest:
        path = rest.split("/", 1)[1]
        fragments |= {segment for segment in re.split(r"[/?&=#]", path) if len(segment) >= TOKEN_LENGTH}
    return {f for f in fragments if len(f) >= MIN_FRAGMENT}


def secret_values(env_vars: Iterable[str] = ()) -> list[str]:
    """Every fragment to mask: of SECRET_SETTINGS and `env_vars` that are set, longest first."""
    fragments: set[str] = set()
    for name in {*SECRET_SETTINGS, *env_vars}:
        value = os.environ.get(name, "")
        if len(value.strip()) >= MIN_FRAGMENT:
            fragments |= url_fragments(value.strip()) | {value, value.strip()}
    return sorted((f for f in fragments if len(f) >= MIN_FRAGMENT), key=len, reverse=True)


def redact(text: object, env_vars: Iterable[str] = ()) -> str:
    """`text` with every secret masked: the values of the secret settings (and `env_vars`), and
    credentials in any URL or connection string."""
    text = str(text)
    for fragment in secret_values(env_vars):
        text = text.replace(fragment, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{_masked_userinfo(m['userinfo'])}@", text)
    text = _KEYWORD_SECRETS.sub(lambda m: f"{m['key']}{m['quote']}{MASK}", text)
    return _SLACK_HOOK.sub(lambda m: f"{m['host']}{MASK}", text)


def _masked_userinfo(userinfo: str) -> str:
    user, _, password = userinfo.partition(":")
    if password in PLACEHOLDERS:
        return userinfo
    return f"{user}:{MASK}" if ":" in userinfo else MASK if user != MASK else user


def describe_url_problem(value: str, schemes: tuple[str, ...], needs_host: bool = True) -> str | None:
    """What is wrong with a URL setting, in words that quote none of it; None if it looks usable.
    Percent-escapes must be complete, the user information may hold at most one unescaped `@`
    separator, and the scheme must be one of `schemes`."""
    value = value.strip()
    if "://" not in value:
        return f"it has no scheme: it must start with {' or '.join(s + '://' for s in schemes)}"
    scheme, rest = value.split("://", 1)
    if scheme.lower() not in schemes:
        return f"its scheme is not {' or '.join(s + '://' for s in schemes)}"
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        return "it has a '%' that does not start an escape such as %40: percent-encode special characters"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority.count("@") > 1:
        return ("its user or password holds an unescaped '@': percent-encode it as %40 "
                "(and ':' as %3A, '/' as %2F)")
    host = authority.rsplit("@", 1)[-1]
    if needs_host and not host.split(":", 1)[0].strip("[]"):
        return "it names no host"
    if ":" in host and not host.endswith("]"):
        port = host.rsplit(":", 1)[1]
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return "its port is not a number from 1 to 65535 (a ':' in the password must be written %3A)"
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return "it contains a space or a control character"
    return None
