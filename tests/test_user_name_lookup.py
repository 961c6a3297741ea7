"""The token endpoint finds a client by user_names.find_key, not by the whole PRECIS profile
(user_name_key): it must find exactly the user user_name_key would, for any text, and a name past
the limit costs nothing. In process: this is the proof of find_key's docstring, checked."""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.limits import MAX_USER_NAME_LENGTH
from server.user_names import NotAUserName, find_key, user_name_key
from tests.unauthenticated import HOSTILE

characters = st.one_of(st.sampled_from(HOSTILE), st.characters(), st.sampled_from("aBcß.-_@0\u0661"))
names = st.one_of(
    st.text(characters, max_size=12),
    st.builds(lambda unit, n: unit * n, st.text(characters, min_size=1, max_size=3), st.integers(0, 120)),
)


def key_or_none(name: str) -> str | None:
    try:
        return user_name_key(name)
    except NotAUserName:
        return None


@given(names)
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_find_key_finds_whom_user_name_key_finds(name: str) -> None:
    found, key = find_key(name), key_or_none(name)
    if key is not None:
        assert found == key
    elif found is not None:
        # No user can have found as its key: a stored key is a fixed point of the profile.
        assert key_or_none(found) != found, (name, found)


def test_a_name_past_the_limit_is_refused_unread() -> None:
    marks = "a" + "\u0301\u0316" * 22_500
    started = time.process_time()
    assert find_key(marks) is None
    assert key_or_none(marks) is None
    assert find_key("a" * (MAX_USER_NAME_LENGTH + 1)) is None
    assert (time.process_time() - started) < 0.01  # PRECIS took 0.26 to 1.5 s of CPU on the marks
