"""redaction: a secret setting's value, and credentials in any URL, never survive a message."""

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from health_pipeline.redaction import MASK, describe_url_problem, redact

PASSWORDS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="'\""),
                    min_size=8, max_size=24)


@settings(max_examples=200, deadline=None)
@given(password=PASSWORDS)
def test_a_postgres_password_is_masked_however_a_message_quotes_it(password):
    """Written escaped or not, quoted whole, decoded, or cut where a parser would cut it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _check_every_quoting(monkeypatch, password)


def _check_every_quoting(monkeypatch, password):
    for url in (f"postgresql://health:{password}@db.internal:5432/cs",
                f"postgresql://health:{quote(password, safe='')}@db.internal:5432/cs",
                f"health:{password}@db.internal:5432/cs"):
        monkeypatch.setenv("HEALTH_SYNC_POSTGRES_URL", url)
        for message in (f'invalid connection option: "{url}"', f"missing '=' after '{password}' in {url}",
                        f"could not translate host name \"{password.split('@')[-1]}@db.internal\""):
            redacted = redact(message)
            assert password not in redacted
            # A piece an unescaped '@' split off, long enough to help a guess, is masked too.
            assert not [piece for piece in password.split("@") if len(piece) >= 4 and piece in redacted]


def test_a_sinks_secret_is_masked_when_the_caller_names_its_variable(monkeypatch):
    monkeypatch.setenv("HOOK", "hooks.slack.com/services/T0AAAA/B0BBBB/abcdefghijklmnopqrstuvwx")
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2hunter2")
    message = "unknown url type: 'hooks.slack.com/services/T0AAAA/B0BBBB/abcdefghijklmnopqrstuvwx'; hunter2hunter2"
    assert "abcdefghijklmnopqrstuvwx" not in redact(message)  # the webhook pattern, even unnamed
    assert redact(message, ["HOOK", "SMTP_PASSWORD"]) == f"unknown url type: '{MASK}'; {MASK}"


@pytest.mark.parametrize("message, expected", [
    ("connect to postgresql://bob:pa55word@h:5432/db failed", f"connect to postgresql://bob:{MASK}@h:5432/db failed"),
    ("s3://AKIA:wJalrXUtnFEMI@bucket/key", f"s3://AKIA:{MASK}@bucket/key"),
    ("host=h user=bob password=pa55word dbname=cs", f"host=h user=bob password={MASK} dbname=cs"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef123456&x=1",
     f"https://b.s3.amazonaws.com/k?X-Amz-Signature={MASK}&x=1"),
    ("no secret here: account A1 has 3 users", "no secret here: account A1 has 3 users"),
])
def test_credentials_in_any_url_or_connection_string_are_masked(message, expected):
    assert redact(message) == expected


@pytest.mark.parametrize("url, problem", [
    ("postgresql://health:s3cret@db:5432/cs", None),
    ("health:s3cret@db:5432/cs", "it has no scheme: it must start with postgresql:// or postgres://"),
    ("mysql://health:s3cret@db/cs", "its scheme is not postgresql:// or postgres://"),
    ("postgresql://health:50%off@db/cs", "it has a '%' that does not start an escape"),
    ("postgresql://health:p@ss@db/cs", "its user or password holds an unescaped '@'"),
    ("postgresql://health:s3cret@/cs", "it names no host"),
    ("postgresql://health:s3cret@db:54x2/cs", "its port is not a number"),
])
def test_a_url_problem_is_described_without_quoting_the_url(url, problem):
    described = describe_url_problem(url, ("postgresql", "postgres"))
    if problem is None:
        assert described is None
    else:
        assert described.startswith(problem)
        assert "s3cret" not in described and url.split("://")[-1] not in described
