"""Columns that hold people's names, contact details, addresses or account numbers, recognised by their values.

The values decide: e-mail and phone patterns, IBANs whose check digits hold (ISO 13616), US social security
numbers, street addresses (a number beside a street word of one of Faker's locales), and names: most values made
of capitalised words, most of them holding a first or last name from Faker's lists of ten locales (first names
alone, last names alone, or both). A column's header may only raise a suspicion (:func:`name_looks_personal`): a
``telephone`` column of two values (``A191``/``A192``) is a category, and a postcode or a city is told from a
number or a word only when the header says so and the values agree.

What was found carries the locale the values suggest (names most often in one locale's lists, the country of
phone prefixes, IBANs and mail domains), from which :mod:`synthforge.data.fake` writes new ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from synthforge.data.fake import COMPONENT_KINDS, DEFAULT_LOCALE

_PERSONAL_NAME = re.compile(
    r"(^|[_\-\s.])(e-?mail|phone|telephone|tel|mobile|cell|fax|ssn|passport|surname|forename|iban|"
    r"(first|last|given|family|full|middle|maiden|user)[_\-\s]?name|name|address|street|addr|"
    r"postcode|zip|zip[_\-\s]?code|postal[_\-\s]?code|city|town|ip[_\-\s]?address)($|[_\-\s.])",
    re.IGNORECASE,
)
# "name" alone also ends names of things (product_name, city_name): those are not about people.
_NAME_OF_A_THING = re.compile(
    r"(product|item|city|country|state|region|company|org|organisation|organization|department|dept|"
    r"file|host|table|column|brand|category|model|station|team|street|event|drug|course|school|"
    r"job|plan|program|programme|class|type|group|store|shop)[_\-\s.]?name", re.IGNORECASE)
_POSTCODE_NAME = re.compile(r"(^|[_\-\s.])(zip|zip[_\-\s]?code|post[_\-\s]?code|postal[_\-\s]?code|plz)($|[_\-\s.])",
                            re.IGNORECASE)
_CITY_NAME = re.compile(r"(^|[_\-\s.])(city|town|municipality|ort|ville|ciudad|citta)($|[_\-\s.])", re.IGNORECASE)

_EMAIL = r"^[\w.+\-']+@[\w\-]+(\.[\w\-]+)+$"
_PHONE = r"^\+?[\d(][\d\s().\-/]{5,18}\d(\s*(x|ext\.?)\s*\d{1,5})?$"
_DATE = r"^(\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4})$"
_SSN = r"^\d{3}-\d{2}-\d{4}$"
_IBAN = r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$"
_POSTCODE = (r"^(\d{5}(-\d{4})?|\d{4}|\d{3}-\d{4}|\d{2}-\d{3}|\d{4} ?[A-Z]{2}|"
             r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d)$")
# A number beside a street word: "12 Main St", "Hauptstraße 5", "5, rue de la Paix", "Via Roma 3".
_STREET_WORDS = (r"st|street|ave|avenue|rd|road|blvd|boulevard|lane|ln|dr|drive|way|court|ct|place|pl|square|sq|"
                 r"terrace|close|crescent|highway|hwy|parkway|pkwy|circle|cir|trail|row|rue|chemin|impasse|allée|"
                 r"avenida|calle|plaza|paseo|via|viale|piazza|corso|largo|strada|ulica|aleja|straat|laan|weg|plein|"
                 r"gatan|vägen|rua|travessa")


@lru_cache(maxsize=1)
def _street_pattern() -> str:
    """The street words above and Faker's English street suffixes (Isle, Bridge, Crossing, …) as one pattern."""
    from synthforge.data.fake import _listing

    suffixes = _listing("en_US", "street_suffixes")
    words = "|".join([_STREET_WORDS, *(re.escape(str(w).lower()) for w in (suffixes[0] if suffixes else ()))])
    return (rf"(?i)(^\d+[a-z]?,?\s+(\S+\s+){{0,4}}({words})\.?(\s|$|,))|"
            rf"(?i)(^({words})\s+(\S+\s+){{0,4}}\d+)|"
            r"(?i)(^\S*(straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|gatan|vägen|laan|straat)\s+\d+)")
_PHONE_LOCALES = {"1": "en_US", "44": "en_GB", "49": "de_DE", "33": "fr_FR", "34": "es_ES", "39": "it_IT",
                  "31": "nl_NL", "55": "pt_BR", "351": "pt_PT", "48": "pl_PL", "46": "sv_SE", "45": "da_DK",
                  "47": "no_NO", "41": "de_CH", "43": "de_AT", "32": "nl_BE", "353": "en_IE", "61": "en_AU",
                  "91": "en_IN", "81": "ja_JP", "86": "zh_CN", "7": "ru_RU", "52": "es_MX"}
_COUNTRY_LOCALES = {"US": "en_US", "GB": "en_GB", "UK": "en_GB", "DE": "de_DE", "FR": "fr_FR", "ES": "es_ES",
                    "IT": "it_IT", "NL": "nl_NL", "BR": "pt_BR", "PT": "pt_PT", "PL": "pl_PL", "SE": "sv_SE",
                    "DK": "da_DK", "NO": "no_NO", "CH": "de_CH", "AT": "de_AT", "BE": "nl_BE", "IE": "en_IE",
                    "AU": "en_AU", "IN": "en_IN", "JP": "ja_JP", "CN": "zh_CN", "RU": "ru_RU", "MX": "es_MX",
                    "FI": "fi_FI", "CZ": "cs_CZ"}
# The locales whose name lists tell names apart (and suggest the locale of a column of names).
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE")
SAMPLE_VALUES = 2000
#: a column of fewer distinct values is a category, whatever they look like
MIN_DISTINCT = 5
#: share of distinct values that must look like one kind for the column to be of that kind
SHARE = 0.8
#: share of a column of single words that must be listed names for it to be a column of names
SINGLE_WORD_SHARE = 0.8
_DESCRIPTIONS = {"person_name": "people's full names", "first_name": "first names", "last_name": "last names",
                 "email": "e-mail addresses", "phone": "phone numbers", "street_address": "street addresses",
                 "city": "cities", "postcode": "postcodes", "iban": "IBANs", "ssn": "US social security numbers"}


@dataclass(frozen=True)
class Finding:
    """What personal data a column's values hold, in which locale, and why that was decided."""

    kind: str
    #: the locale the values suggest; None where they suggest none (a .com address, a 5-digit postcode)
    locale: str | None
    reason: str

    @property
    def identifying(self) -> bool:
        """Whether one value alone points at a person (a full name, an e-mail), unlike a city or a first name."""
        return self.kind not in COMPONENT_KINDS


def describe(kind: str) -> str:
    return _DESCRIPTIONS.get(kind, kind)


def name_looks_personal(name: str) -> bool:
    """Whether a column's header suggests people's names, contact details or addresses: a suspicion only."""
    return bool(_PERSONAL_NAME.search(name)) and not _NAME_OF_A_THING.search(name)


@lru_cache(maxsize=1)
def _lexicons() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each locale's first and last names (lowercased), from Faker's person providers."""
    from synthforge.data.fake import _faker

    found = {}
    for locale in NAME_LOCALES:
        person = _faker(locale).provider("faker.providers.person")
        first = {str(n).lower() for attr in ("first_names", "first_names_male", "first_names_female")
                 for n in (getattr(person, attr, None) or ())}
        last = {str(n).lower() for n in (getattr(person, "last_names", None) or ())}
        found[locale] = (frozenset(first), frozenset(last))
    return found


def _majority(values: list[str], table: dict[str, str]) -> str | None:
    counts: dict[str, int] = {}
    for value in values:
        if value in table:
            counts[table[value]] = counts.get(table[value], 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


def _iban_valid(value: str) -> bool:
    moved = value[4:] + value[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


def find_personal(series: pl.Series) -> Finding | None:
    """The personal data ``series``'s values hold, or None. A column of fewer than ``MIN_DISTINCT`` distinct values
    is a category and holds none."""
    if series.dtype not in (pl.String, pl.Categorical) and not isinstance(series.dtype, pl.Enum):
        return None
    values = series.cast(pl.String).drop_nulls().unique().sort().head(SAMPLE_VALUES).str.strip_chars()
    values = values.filter(values.str.len_chars() > 0)
    if values.len() < MIN_DISTINCT:
        return None
    total = values.len()

    def share(mask: pl.Series) -> float:
        return float(mask.sum()) / total

    emails = values.str.contains(_EMAIL)
    if share(emails) >= SHARE:
        tlds = values.filter(emails).str.extract(r"\.([a-zA-Z]+)$").str.to_uppercase().to_list()
        locale = _majority([t for t in tlds if t], _COUNTRY_LOCALES)
        return Finding("email", locale, f"{share(emails):.0%} of its distinct values are e-mail addresses")
    compact = values.str.replace_all(r"\s", "")
    ibans = compact.str.contains(_IBAN)
    if share(ibans) >= SHARE:
        valid = [value for value in compact.filter(ibans).to_list() if _iban_valid(value)]
        if len(valid) >= SHARE * total:
            locale = _majority([value[:2] for value in valid], _COUNTRY_LOCALES)
            return Finding("iban", locale, f"{len(valid) / total:.0%} of its distinct values are IBANs whose "
                                           f"check digits hold")
    ssns = values.str.contains(_SSN)
    if share(ssns) >= SHARE:
        return Finding("ssn", "en_US", f"{share(ssns):.0%} of its distinct values are shaped ###-##-####")
    # Digits alone could be any number: most phone numbers here must also have a + or a separator.
    phones = values.str.contains(_PHONE) & (values.str.count_matches(r"\d") >= 7) & ~values.str.contains(_DATE)
    if share(phones) >= SHARE and share(phones & values.str.contains(r"^\+|[\s().\-/]")) >= 0.5:
        prefixes = values.filter(phones).str.extract(r"^\+(\d{1,3})").drop_nulls().to_list()
        locale = next((_PHONE_LOCALES[p[:k]] for p in _common(prefixes) for k in (3, 2, 1)
                       if p[:k] in _PHONE_LOCALES), None)
        return Finding("phone", locale, f"{share(phones):.0%} of its distinct values are phone numbers")
    streets = values.str.contains(_street_pattern())
    if share(streets) >= SHARE:
        return Finding("street_address", _street_locale(values.filter(streets)),
                       f"{share(streets):.0%} of its distinct values are a number beside a street word")
    return _names(values)


def find_by_name_and_values(series: pl.Series) -> Finding | None:
    """A postcode or a city: told from other numbers and words only when the header says so and the values agree."""
    if series.dtype not in (pl.String, pl.Categorical) and not isinstance(series.dtype, pl.Enum):
        return None
    values = series.cast(pl.String).drop_nulls().unique().sort().head(SAMPLE_VALUES).str.strip_chars()
    if values.len() < MIN_DISTINCT:
        return None
    if _POSTCODE_NAME.search(series.name):
        shaped = values.str.contains(_POSTCODE).mean() or 0.0
        if shaped >= SHARE:
            return Finding("postcode", None, f"its name says postcodes and {shaped:.0%} of its distinct "
                                                       f"values are shaped like one")
    if _CITY_NAME.search(series.name):
        worded = values.str.contains(r"^\p{Lu}[\p{L}'.\-]*(\s+[\p{L}'.\-]+){0,3}$").mean() or 0.0
        if worded >= SHARE:
            return Finding("city", _city_locale(values),
                           f"its name says cities and {worded:.0%} of its distinct values are capitalised words")
    return None


@lru_cache(maxsize=1)
def _city_lists() -> dict[str, frozenset[str]]:
    """The real cities Faker lists for some locales (de_DE, it_IT, nl_NL, pl_PL, sv_SE), lowercased."""
    from synthforge.data.fake import _listing

    found = {}
    for locale in NAME_LOCALES:
        cities = _listing(locale, "cities")
        if cities is not None:
            found[locale] = frozenset(str(c).lower() for c in cities[0])
    return found


def _city_locale(values: pl.Series) -> str | None:
    lowered = set(values.str.to_lowercase().to_list())
    counts = {locale: len(lowered & cities) for locale, cities in _city_lists().items()}
    best = max(counts, key=counts.__getitem__, default=None)
    return best if best is not None and counts[best] >= 0.2 * len(lowered) else None


def _common(values: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts, key=counts.__getitem__, reverse=True)


def _street_locale(values: pl.Series) -> str | None:
    lowered = " ".join(values.head(200).str.to_lowercase().to_list())
    hints = {"en_US": r"\b(street|st|avenue|ave|road|rd|drive|dr|lane|ln|court|courts|way|suite|apt)\b",
             "de_DE": r"stra(ß|ss)e|weg\b|allee|platz|gasse", "fr_FR": r"\brue\b|chemin|impasse|allée",
             "es_ES": r"\bcalle\b|avenida|paseo", "it_IT": r"\bvia\b|viale|piazza|corso", "nl_NL": r"straat|laan",
             "sv_SE": r"gatan|vägen", "pl_PL": r"ulica|aleja", "pt_BR": r"\brua\b|travessa"}
    counts = {locale: len(re.findall(pattern, lowered)) for locale, pattern in hints.items()}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


def _names(values: pl.Series) -> Finding | None:
    """People's names: most distinct values one to four capitalised words, most holding a listed name."""
    shaped = values.filter(values.str.contains(r"^\p{Lu}[\p{L}'\-]+(,?\s+\p{Lu}[\p{L}'\-.]*){0,3}$"))
    if shaped.len() < SHARE * values.len():
        return None
    words = shaped.str.to_lowercase().str.extract_all(r"\p{L}[\p{L}'\-]*").to_list()
    lexicons = _lexicons()
    hits = {}
    for locale, (first, last) in lexicons.items():
        firsts = sum(any(w in first for w in value) for value in words)
        lasts = sum(any(w in last for w in value) for value in words)
        hits[locale] = (firsts, lasts, sum(any(w in first or w in last for w in value) for value in words))
    locale = max(hits, key=lambda name: (hits[name][2], name == DEFAULT_LOCALE))
    all_first = frozenset().union(*(first for first, _ in lexicons.values()))
    all_last = frozenset().union(*(last for _, last in lexicons.values()))
    known = sum(any(w in all_first or w in all_last for w in value) for value in words) / len(words)
    if known < 0.5:
        return None
    single = sum(len(value) == 1 for value in words) / len(words)
    # Single words are names only when nearly all are: colours (Brown, Green, White) and months (May, June) are
    # surnames and first names too, but never all of a column's values.
    if single >= SHARE and known < SINGLE_WORD_SHARE:
        return None
    if single >= SHARE:
        firsts = sum(value[0] in all_first for value in words if len(value) == 1)
        lasts = sum(value[0] in all_last for value in words if len(value) == 1)
        kind = "first_name" if firsts >= lasts else "last_name"
    else:
        kind = "person_name"
    return Finding(kind, locale, f"{known:.0%} of its distinct values hold a first or last name listed for "
                                 f"{len(lexicons)} locales ({locale} most)")
