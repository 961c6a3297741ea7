"""The secret generator: 64 characters of [A-Za-z0-9], every one possible, none favoured."""

from collections import Counter

from server.domain.credentials import SECRET_ALPHABET, SECRET_LENGTH, new_client_secret


def test_secrets_are_uniform_over_the_whole_alphabet() -> None:
    secrets = [new_client_secret() for _ in range(10_000)]
    assert all(len(s) == SECRET_LENGTH and set(s) <= set(SECRET_ALPHABET) for s in secrets)
    assert len(set(secrets)) == len(secrets)
    counts = Counter("".join(secrets))
    expected = 10_000 * SECRET_LENGTH / len(SECRET_ALPHABET)  # about 10,323 each
    # A plain `byte % 62` would favour 8 characters (256 % 62) by 25 %. One count's random spread
    # is about 1 % (sqrt of 10,323), so 6 % is about 6 sigma: no false alarms, and that bias shows.
    # Every character, the last one included, must appear.
    assert set(counts) == set(SECRET_ALPHABET)
    assert max(counts.values()) < expected * 1.06
    assert min(counts.values()) > expected * 0.94
