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
"""

from icu import SpoofChecker
from precis_i18n import get_profile
from unicodedataplus import script_extensions

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
    """The form two user names share when they are the same name; raises NotAUserName."""
    try:
        return str(_PROFILE.enforce(name))
    except UnicodeEncodeError as error:
        raise NotAUserName(f"must not contain {error.object[error.start]!r} ({error.reason})") from None


def user_name_skeleton(name: str) -> str:
    """The confusable skeleton (TS #39 §4) of the name as written, case folded: two names that
    have one look alike. Of the name as written, not its key: the confusables data maps capitals
    by their own shapes (a Greek capital alpha to a Latin `A`, a capital `I` to `l`), which case folding first
    would lose. The type argument of getSkeleton is ignored since ICU 58 (one table for all)."""
    return str(_SPOOF.getSkeleton(0, name)).casefold()


def check_scripts(name: str) -> None:
    """Raises NotAUserName for a name that mixes scripts beyond TS #39's highly restrictive level."""
    letters = [set(script_extensions(ch)) - _ANY_SCRIPT for ch in name]
    letters = [scripts for scripts in letters if scripts]
    if not letters or set.intersection(*letters):
        return
    if any(all(scripts & allowed for scripts in letters) for allowed in _COMBINATIONS):
        return
    raise NotAUserName("must not mix scripts (e.g. Latin with Cyrillic letters that look alike)")
