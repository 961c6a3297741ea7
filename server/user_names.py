"""When two user names are the same name: the uniqueness key of a user name, and which names are
refused because they only look like another.

A user name is an OAuth2 client id, compared by people reading logs and consoles. Names that look
alike must not be two users: `botB` in fullwidth letters and `botb`, `café` composed (NFC) and
decomposed (NFD). So the key is RFC 8265's UsernameCaseMapped profile with case folding (PRECIS, through the
precis-i18n library): width and compatibility forms mapped (NFKC), case folded, NFC; characters the
profile disallows (spaces, controls, symbols outside its identifier class) refused.

Names that mix scripts (`botB` spelt with a Cyrillic o) cannot be mapped onto their look-alike, so
they are refused instead, at Unicode TS #39's "highly restrictive" level: every letter from one script,
or from one of the combinations that writing Japanese, Chinese or Korean together with Latin
needs. Characters common to all scripts (digits, `-`, `.`, `_`, `@`) go with any.

Names of one script that look like a name of another (`cope` spelt in Cyrillic, U+0441 U+043E
U+0440 U+0435, and in Latin; Greek capitals alpha, beta, epsilon and `abe`; a dotless i, U+0131,
and an i) have one confusable skeleton (TS #39 §4, ICU's SpoofChecker and the
confusables data of its Unicode version, through PyICU): no two users share one (the store's
unique index). The skeleton decides uniqueness only: a client is still found by its PRECIS key, so
the Latin `cope` never authenticates as the Cyrillic user, and a name names at most one user, even where two
users that were made before the skeleton share one.

Neither the domain's nor the store's alone, so it sits beside both, like clock.py and limits.py:
the domain refuses names by it and finds clients by find_key, and the store keys its unique indexes
by it (the projection of a new user computes its name's key and skeleton inside the append's
transaction, and migrations 5 and 15 computed them for the users before). The layering allows the
domain nothing of the store but its contract (tests/test_layers.py), and the store nothing of the
domain.
"""

from icu import SpoofChecker
from precis_i18n import get_profile
from unicodedataplus import script_extensions

from server.limits import MAX_USER_NAME_LENGTH

_PROFILE = get_profile("UsernameCaseMapped:CaseFold")
_SPOOF = SpoofChecker()  # only getSkeleton is used: a pure function of its data
_ANY_SCRIPT = {"Zyyy", "Zinh"}  # Common, Inherited
# TS #39 §5.2, highly restrictive: the sets of scripts one name may combine.
_COMBINATIONS = [
    {"Latn", "Hani", "Hira", "Kana"},
    {"Latn", "Hani", "Bopo"},
    {"Latn", "Hani", "Hang"},
]


class NotAUserName(ValueError):
    """The text cannot be a user name; the message says why, for the caller."""


def user_name_key(name: str) -> str:
    """The form two user names share when they are the same name; raises NotAUserName.

    A name longer than any user name may be is refused first, unread: PRECIS's work grows with the
    square of a run of combining marks, and a caller with no credential chooses the client id."""
    _check_length(name)
    try:
        return str(_PROFILE.enforce(name))
    except UnicodeEncodeError as error:
        if not 0 <= error.start < len(error.object):  # the whole name: empty, the Bidi rule
            raise NotAUserName(f"is not a user name ({error.reason})") from None
        raise NotAUserName(f"must not contain {error.object[error.start]!r} ({error.reason})") from None


def user_name_skeleton(name: str) -> str:
    """The confusable skeleton (TS #39 §4) of the name as written, case folded: two names that
    have one look alike. Of the name as written, not its key: the confusables data maps capitals
    by their own shapes (a Greek capital alpha to a Latin `A`, a capital `I` to `l`), which case folding first
    would lose. The type argument of getSkeleton is ignored since ICU 58 (one table for all)."""
    return str(_SPOOF.getSkeleton(0, name)).casefold()


def find_key(name: str) -> str | None:
    """The key to find the user named name by: user_name_key's, for any name a user has; None for
    a name no user can have. For lookups of names a caller chose (the token endpoint's client id).

    It maps (RFC 8264's five rules: width, case, NFC, the Bidi rule) without enforcing the profile
    character by character, which is most of user_name_key's work and, with the context rules'
    scans of the whole name (a run of U+06F0), grows with the square of the name's length. It
    finds the same user: a stored key K passed every check, and the checks look only at the
    mapped form, so a name that maps to K would have passed them too, and has the key K; a name
    that maps to anything else has no stored key, valid or not."""
    if len(name) > MAX_USER_NAME_LENGTH:
        return None
    try:
        key = _PROFILE.apply_five_rules(name)
        key.encode()  # a lone surrogate: in no stored key, and no store takes it
    except UnicodeEncodeError:  # the Bidi rule refused it, or it cannot be encoded
        return None
    # NUL is in no stored key (the profile refuses controls), and PostgreSQL takes no NUL in text.
    return key if key and "\x00" not in key else None


def check_scripts(name: str) -> None:
    """Raises NotAUserName for a name that mixes scripts beyond TS #39's highly restrictive level."""
    _check_length(name)
    letters = [set(script_extensions(ch)) - _ANY_SCRIPT for ch in name]
    letters = [scripts for scripts in letters if scripts]
    if not letters or set.intersection(*letters):
        return
    if any(all(scripts & allowed for scripts in letters) for allowed in _COMBINATIONS):
        return
    raise NotAUserName("must not mix scripts (e.g. Latin with Cyrillic letters that look alike)")


def _check_length(name: str) -> None:
    if len(name) > MAX_USER_NAME_LENGTH:
        raise NotAUserName(f"must be at most {MAX_USER_NAME_LENGTH} characters")
