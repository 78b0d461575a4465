"""Redaction's shortcut (studiodoctor.secrets._NEEDS): a pattern skipped for a string that lacks the words it
needs must never leave a secret the pattern would have masked. Checked against the patterns applied to every
string, on strings built from the words the patterns look for, secret-shaped values, separators, case changes
and the non-ASCII letters case-insensitive matching treats as ASCII ones (dotless i, long s, Kelvin sign)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from studiodoctor.secrets import _PATTERNS, Redactor

PIECES = ["authorization", "AUTHORIZATION", "Authorization", "x-auth-key", "cookie", "Cookie", "api-key",
          "x-postmark-server-token", "bearer", "Bearer", "token", "TOKEN", "basic", "Basic", "password", "pwd",
          "secret", "sig", "x-goog-signature", "api_key", "https://", "redis://", "postgres://", "user", ":", "@",
          "=", "&", " ", "\n", '"', "'", "/", "s3cr3tValue99", "abcdefgh.ijk-lmn", "***", "to", "ken", "auth",
          "orization", "\u0131", "\u017f", "\u212a", "\u00df", "\u00e9", "ap\u0131-key", "Coo\u212aie",
          "pa\u017f\u017fword", "authorızation"]


def reference(text: str, secrets=()) -> str:
    """Every pattern on every string: what redaction did before the shortcut."""
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_the_shortcut_masks_what_every_pattern_masks(text):
    assert Redactor().text(text) == reference(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=10).map("".join),
       st.lists(st.sampled_from(["s3cr3tValue99", "user", "abcdefgh.ijk-lmn", "pass"]), max_size=3))
def test_known_secrets_then_patterns_as_before(text, secrets):
    assert Redactor(secrets).text(text) == reference(text, secrets)


def test_each_pattern_still_masks_its_own_shape():
    red = Redactor()
    assert red.text("redis://default:hunter22@redis:6379/0") == "redis://default:***@redis:6379/0"
    assert red.text("GET /x?token=abc123&y=1") == "GET /x?token=***&y=1"
    assert red.text("Authorization: Bearer abcdefghijkl") == "Authorization: ***"
    assert red.text("sent bearer abcdefghijklmnop") == "sent bearer ***"
    assert red.text("Coo\u212aie: session=abc") != "Coo\u212aie: session=abc"  # a Kelvin sign is still a k


def test_every_word_the_shortcut_looks_for_in_every_shape():
    """Deterministic: each piece next to each other piece, then with a secret-shaped value after it."""
    red = Redactor()
    for a in PIECES:
        for b in PIECES:
            for text in (a + b, a + b + "s3cr3tValue99", a + ": " + b + " abcdefgh.ijk-lmn", b + "=" + a + "@x"):
                assert red.text(text) == reference(text), text
