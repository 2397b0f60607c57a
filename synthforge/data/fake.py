"""Realistic values for personal columns (names, e-mails, phones, addresses, IBANs), from Faker's lists, vectorised.

Faker writes one value per call (about 30 µs for a name on a quiet machine), too slow for millions of rows. Its
locale providers are data: weighted lists of first and last names, and templates such as
``{{building_number}} {{street_name}}`` or ``+49(0)#### ######``. This module renders those templates a whole
column at a time: a list is a weighted pick, a template part is filled for every row that drew it, ``#`` is a
random digit (Faker's ``numerify`` rules), and a token with neither list nor template (``city_name`` in de_DE)
is picked from a pool of Faker's own draws. A million values take a few seconds.

One row holds one person and one address: a table's name columns, its e-mail (built from that name) and its
address parts (a US postcode in its state's range) come from the same draw.

Randomness comes from :class:`Draws`: either a numpy generator (fresh values for synthetic rows), or keys, one
per real value (:func:`pseudonyms`): a keyed hash of the real value with a secret of the run picks every
choice, so a real entity gets the same fake value in every row and every table of a run, and no map of real
values is kept anywhere.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import KeysView
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

#: what a personal column may hold, as a recipe names it (``source.columns.NAME.pii``)
PERSONAL_KINDS = ("person_name", "first_name", "last_name", "email", "phone", "street_address", "city", "state",
                  "postcode", "iban", "ssn")
#: kinds whose single value names no one: public words that real and fake values share by chance (a first name,
#: a city); identifier_leak judges them together (a first and a last name in one row), not one by one
COMPONENT_KINDS = frozenset({"first_name", "last_name", "city", "state", "postcode"})
PERSON_KINDS = ("person_name", "first_name", "last_name", "email")
ADDRESS_KINDS = ("street_address", "city", "state", "postcode")
DEFAULT_LOCALE = "en_US"
# Faker draws kept for a token that has no list or template of its own (a city name from a list of real ones).
POOL = 500
_TOKEN = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def check_locale(locale: str) -> str:
    """``locale`` if Faker has it, else a ValueError naming some that it has (a recipe's validators raise it)."""
    from faker.config import AVAILABLE_LOCALES

    if locale not in AVAILABLE_LOCALES:
        close = [name for name in AVAILABLE_LOCALES if name.split("_")[0] == locale.split("_")[0]][:8]
        raise ValueError(f"locale {locale!r} is not one Faker knows; "
                          f"{'close ones: ' + ', '.join(close) if close else 'e.g. en_US, en_GB, de_DE, fr_FR'}.")
    return locale


# --- random draws: a generator's, or each real value's own keyed stream -------------------------------------------


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class Draws:
    """Uniform numbers for ``n`` rows: from ``rng``, or from ``keys`` (one uint64 per row: the row's own stream)."""

    def __init__(self, n: int, rng: np.random.Generator | None = None, keys: np.ndarray | None = None) -> None:
        self.n, self._rng, self._keys, self._calls = n, rng, keys, 0

    def random(self) -> np.ndarray:
        if self._rng is not None:
            return self._rng.random(self.n)
        self._calls += 1
        with np.errstate(over="ignore"):
            mixed = _splitmix(self._keys ^ (np.uint64(self._calls) * _GOLDEN))  # type: ignore[operator]
        return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)

    def integers(self, high: int) -> np.ndarray:
        return np.minimum((self.random() * high).astype(np.int64), high - 1)

    def pick(self, weights: np.ndarray | None, count: int) -> np.ndarray:
        """An index into ``count`` items per row, by ``weights`` (None: uniform)."""
        if weights is None:
            return self.integers(count)
        return np.minimum(np.searchsorted(np.cumsum(weights), self.random() * weights.sum(), side="right"), count - 1)

    def subset(self, rows: np.ndarray, tag: int) -> Draws:
        """Draws for the rows ``rows`` (a mask) only, named apart by ``tag``: a keyed row's numbers still depend on
        its key alone, not on which other rows share its template."""
        if self._rng is not None:
            return Draws(int(rows.sum()), rng=self._rng)
        self._calls += 1
        salt = np.uint64((self._calls * 1_000_003 + tag) & 0xFFFFFFFFFFFFFFFF)
        return Draws(int(rows.sum()), keys=_splitmix(self._keys[rows] ^ salt))  # type: ignore[index]


# --- a locale's lists and templates ----------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _faker(locale: str) -> Any:
    from faker import Faker

    return Faker(check_locale(locale))


def _attribute(locale: str, name: str, provider: str | None = None) -> Any:
    faker = _faker(locale)
    providers = [faker.provider(provider)] if provider else faker.factories[0].providers
    for item in providers:
        value = getattr(item, name, None)
        if value is not None and not callable(value):
            return value
    return None


@lru_cache(maxsize=512)
def _listing(locale: str, name: str, provider: str | None = None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The strings of a provider's list or weighted dict ``name`` and their weights (None: equal)."""
    value = _attribute(locale, name, provider)
    if isinstance(value, dict):
        items = [(key, float(weight)) for key, weight in value.items() if isinstance(key, str)]
        if items and all(isinstance(weight, float) for _, weight in items):
            return np.array([k for k, _ in items], dtype=object), np.array([w for _, w in items])
        return None
    if isinstance(value, list | tuple | KeysView):
        items = [item for item in value if isinstance(item, str)]
        return (np.array(items, dtype=object), None) if items else None
    return None


_ALIASES = {"state": "administrative_unit", "postcode": "postalcode"}


@lru_cache(maxsize=256)
def _pool(locale: str, token: str, seed: int) -> np.ndarray:
    """``POOL`` values of Faker's own method ``token``, seeded: for tokens with no list or template here."""
    from faker import Faker

    faker = Faker(locale)
    name = token if hasattr(faker, token) else _ALIASES.get(token, token)
    if not hasattr(faker, name):  # a locale without it (fr_FR has no `state`): the default locale's
        faker = Faker(DEFAULT_LOCALE)
    faker.seed_instance(seed)
    method = getattr(faker, name)
    return np.array([str(method()) for _ in range(POOL)], dtype=object)


_DIGITS = np.array(list(string.digits), dtype="<U1")
_LETTERS = np.array(list(string.ascii_uppercase), dtype="<U1")


def _numerify(text: str, draws: Draws) -> np.ndarray:
    """``text`` for every row with Faker's placeholders filled: # 0-9, % 1-9, $ 2-9, ! 0-9 or '', @ 1-9 or '',
    ? an uppercase letter."""
    if "!" in text or "@" in text:  # a character that may vanish: joined part by part
        out = np.full(draws.n, "", dtype=object)
        for char in text:
            out = out + (_numerify(char, draws) if char not in "!@" else
                         np.where(draws.random() < 0.5, "", _DIGITS[(char == "@") + draws.integers(10 - (char == "@"))])
                         .astype(object))
        return out
    if not text:
        return np.full(draws.n, "", dtype=object)
    columns = []
    for char in text:
        if char == "#":
            columns.append(_DIGITS[draws.integers(10)])
        elif char == "%":
            columns.append(_DIGITS[1 + draws.integers(9)])
        elif char == "$":
            columns.append(_DIGITS[2 + draws.integers(8)])
        elif char == "?":
            columns.append(_LETTERS[draws.integers(26)])
        else:
            columns.append(np.full(draws.n, char, dtype="<U1"))
    return _joined(columns, draws.n)


def _joined(columns: list[np.ndarray], n: int) -> np.ndarray:
    """Single characters, one array per position, joined into one string per row (as one numpy view)."""
    matrix = np.stack(columns, axis=1).astype("<U1", copy=False) if n else np.zeros((0, len(columns)), "<U1")
    return np.ascontiguousarray(matrix).view(f"<U{len(columns)}").reshape(n).astype(object)


@lru_cache(maxsize=512)
def _has_hashes(locale: str, name: str) -> bool:
    found = _listing(locale, name)
    return found is not None and any("#" in value for value in found[0])


def _fill_hashes(values: np.ndarray, draws: Draws) -> np.ndarray:
    """Listed values that hold ``#`` (it_IT's area codes "03#"), each ``#`` a random digit, as Faker fills them."""
    most = max((str(v).count("#") for v in values), default=0)
    if not most:
        return values
    digits = np.stack([draws.integers(10) for _ in range(most)], axis=1)
    out = values.copy()
    for row in np.flatnonzero([("#" in str(v)) for v in values]):
        text = str(values[row])
        for digit in digits[row][: text.count("#")]:
            text = text.replace("#", str(digit), 1)
        out[row] = text
    return out


def _templates(locale: str, token: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    if token == "phone_number":
        return _listing(locale, "formats", "faker.providers.phone_number")
    return _listing(locale, f"{token}_formats")


def render(locale: str, token: str, draws: Draws, seed: int, depth: int = 0) -> np.ndarray:
    """Faker's ``{{token}}`` for every row: its list (``first_names``), its templates (``city_formats``), or
    a pool of Faker's own draws."""
    stem = token.removesuffix("_name")  # de_DE's city_name picks from its `cities`
    for plural in (f"{token}s", f"{token}es", f"{token[:-1]}ies" if token.endswith("y") else "",
                   f"{stem[:-1]}ies" if stem != token and stem.endswith("y") else ""):
        found = _listing(locale, plural) if plural else None
        if found is not None:
            values, weights = found
            picked = values[draws.pick(weights, len(values))]
            return _fill_hashes(picked, draws) if _has_hashes(locale, plural) else picked
    templates = _templates(locale, token) if depth < 6 else None
    if token == "postcode" and templates is not None and not all(
            re.fullmatch(r"[#%$!@?0-9 \-]*", str(t)) for t in templates[0]):
        templates = None  # a locale's own placeholders (en_GB's "AN NEE"): Faker's draws are taken whole
    if templates is not None:
        return render_templates(locale, *templates, draws, seed, depth + 1)
    pool = _pool(locale, token, seed)
    return pool[draws.integers(len(pool))]


def render_templates(locale: str, templates: np.ndarray, weights: np.ndarray | None, draws: Draws, seed: int,
                     depth: int = 0) -> np.ndarray:
    which = draws.pick(weights, len(templates))
    out = np.empty(draws.n, dtype=object)
    for index in np.unique(which):
        rows = which == index
        sub = draws.subset(rows, int(index))
        parts = [pl.Series(render(locale, part, sub, seed, depth) if position % 2 else _numerify(part, sub),
                           dtype=pl.String)
                 for position, part in enumerate(_TOKEN.split(str(templates[index]))) if part]
        out[rows] = pl.select(pl.concat_str([pl.lit(part) for part in parts])).to_series().to_numpy() \
            if parts else ""
    return out


# --- people and addresses ----------------------------------------------------------------------------------------


def _people(locale: str, draws: Draws, seed: int) -> dict[str, np.ndarray]:
    """One person per row: first name (by sex where the locale lists them so), last name, and the full name in the
    locale's order."""
    female = draws.random() < 0.5
    first = np.empty(draws.n, dtype=object)
    for mask, suffix in ((female, "_female"), (~female, "_male")):
        sub = draws.subset(mask, int(suffix == "_male"))
        first[mask] = render(locale, f"first_name{suffix}", sub, seed) if _listing(locale, f"first_names{suffix}") \
            else render(locale, "first_name", sub, seed)
    last = render(locale, "last_name", draws, seed)
    formats = _listing(locale, "formats", "faker.providers.person")
    last_first = formats is not None and str(formats[0][0]).lstrip().startswith("{{last_name")
    full = (last + " " + first) if last_first else (first + " " + last)
    return {"first_name": first, "last_name": last, "person_name": full}


def _ascii(values: np.ndarray) -> np.ndarray:
    """Lowercase ASCII letters of each value (accents dropped: "Françoise" → "francoise"), worked out once per
    distinct value."""
    table = {v: re.sub(r"[^a-z]", "", unicodedata.normalize("NFKD", str(v)).lower()) for v in set(values.tolist())}
    return np.array([table[v] for v in values.tolist()], dtype=object)


def _emails(locale: str, person: dict[str, np.ndarray], draws: Draws, seed: int) -> np.ndarray:
    """An address built from the row's own name: first.last, flast, first_last, firstlast or last.first, a number
    after some, at one of the locale's free mail domains."""
    first, last = _ascii(person["first_name"]), _ascii(person["last_name"])
    for part in (first, last):  # a name in another script has no ASCII letters: letters drawn at random instead
        empty = part == ""
        if empty.any():
            part[empty] = np.array([v.lower() for v in _numerify("??????", draws)[empty]], dtype=object)
    domains = _listing(locale, "free_email_domains") or (np.array(["example.com"], dtype=object), None)
    number = draws.random()
    frame = pl.DataFrame({
        "first": pl.Series(first.tolist(), dtype=pl.String), "last": pl.Series(last.tolist(), dtype=pl.String),
        "shape": draws.integers(5), "digits": (draws.random() * np.where(number < 0.4, 100, 10)).astype(np.int64),
        "numbered": number < 0.55,
        "domain": pl.Series(domains[0][draws.pick(domains[1], len(domains[0]))].tolist(), dtype=pl.String)})
    first_, last_ = pl.col("first"), pl.col("last")
    user = (pl.when(pl.col("shape") == 0).then(pl.concat_str(first_, pl.lit("."), last_))
            .when(pl.col("shape") == 1).then(pl.concat_str(first_.str.slice(0, 1), last_))
            .when(pl.col("shape") == 2).then(pl.concat_str(first_, pl.lit("_"), last_))
            .when(pl.col("shape") == 3).then(pl.concat_str(first_, last_))
            .otherwise(pl.concat_str(last_, pl.lit("."), first_)))
    user = pl.when(pl.col("numbered")).then(pl.concat_str(user, pl.col("digits").cast(pl.String))).otherwise(user)
    return frame.select(pl.concat_str(user, pl.lit("@"), pl.col("domain"))).to_series().to_numpy().astype(object)


def _addresses(locale: str, kinds: set[str], draws: Draws, seed: int) -> dict[str, np.ndarray]:
    """One address per row; a US postcode lies in its state's range (Faker's ``states_postcode``)."""
    out: dict[str, np.ndarray] = {}
    if "street_address" in kinds:
        out["street_address"] = render(locale, "street_address", draws, seed)
    if "city" in kinds:
        out["city"] = render(locale, "city", draws, seed)
    ranges = _attribute(locale, "states_postcode")
    abbreviations = _listing(locale, "states_abbr")
    if "state" in kinds or "postcode" in kinds:
        if isinstance(ranges, dict) and abbreviations is not None and "postcode" in kinds:
            codes = np.array([code for code in abbreviations[0] if code in ranges], dtype=object)
            state = codes[draws.integers(len(codes))]
            low = np.array([ranges[code][0] for code in state])
            high = np.array([ranges[code][1] for code in state])
            postcode = low + (draws.random() * (high - low + 1)).astype(np.int64)
            out["postcode"] = _zero_padded(postcode, 5)
            names = _listing(locale, "states")
            if names is not None and len(names[0]) == len(abbreviations[0]):
                by_code = dict(zip(abbreviations[0], names[0], strict=True))
                out["state"] = np.array([by_code[code] for code in state], dtype=object)
            else:
                out["state"] = state
        else:
            if "state" in kinds:
                out["state"] = render(locale, "state", draws, seed)
            if "postcode" in kinds:
                out["postcode"] = render(locale, "postcode", draws, seed)
    return out


def _ibans(locale: str, draws: Draws) -> np.ndarray:
    """IBANs of the locale's country and BBAN shape, with valid check digits (ISO 13616 mod 97)."""
    country = str(_attribute(locale, "country_code", "faker.providers.bank") or "GB")
    shape = str(_attribute(locale, "bban_format", "faker.providers.bank") or "????##############")
    columns = []  # per character of the BBAN: its code per row
    for char in shape:
        if char == "?":
            columns.append(10 + draws.integers(26))  # A=10 … Z=35, as the checksum counts letters
        elif char == "#":
            columns.append(draws.integers(10))
        else:
            columns.append(np.full(draws.n, int(char, 36)))
    # mod 97 of BBAN + country letters + "00", digit by digit (a letter counts as two digits)
    remainder = np.zeros(draws.n, dtype=np.int64)
    for code in [*columns, *(np.full(draws.n, int(c, 36)) for c in country + "00")]:
        remainder = (remainder * np.where(code >= 10, 100, 10) + code) % 97
    check = 98 - remainder
    alphabet = np.array(list(string.digits + string.ascii_uppercase), dtype="<U1")
    characters = [np.full(draws.n, c, dtype="<U1") for c in country] + [_DIGITS[check // 10], _DIGITS[check % 10]]
    return _joined(characters + [alphabet[code] for code in columns], draws.n)


def _ssns(draws: Draws) -> np.ndarray:
    """US social security numbers as Faker writes them: area 001-899 but 666, group 01-99, serial 0001-9999."""
    area = 1 + draws.integers(899)
    area = np.where(area == 666, 667, area)
    group, serial = 1 + draws.integers(99), 1 + draws.integers(9999)
    parts = pl.DataFrame({"a": area, "g": group, "s": serial}, schema={"a": pl.Int64, "g": pl.Int64, "s": pl.Int64})
    return parts.select(pl.concat_str(pl.col("a").cast(pl.String).str.zfill(3), pl.lit("-"),
                                      pl.col("g").cast(pl.String).str.zfill(2), pl.lit("-"),
                                      pl.col("s").cast(pl.String).str.zfill(4))).to_series().to_numpy().astype(object)


def _zero_padded(numbers: np.ndarray, width: int) -> np.ndarray:
    return pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width).to_numpy().astype(object)


def fake_columns(kinds: dict[str, str], locale: str, draws: Draws, seed: int) -> dict[str, np.ndarray]:
    """Values for the columns ``kinds`` (column → personal kind) of ``draws.n`` rows: the first column of each
    person kind belongs to one person per row (its e-mail made from its name), every further one to a person of
    its own; the address kinds to one address per row."""
    out: dict[str, np.ndarray] = {}
    person: dict[str, np.ndarray] | None = None
    address: dict[str, np.ndarray] | None = None
    taken: set[str] = set()
    for column, kind in sorted(kinds.items(), key=lambda item: PERSONAL_KINDS.index(item[1])):
        if kind in PERSON_KINDS:
            mine = person if kind not in taken and person is not None else None
            if mine is None:
                mine = _people(locale, draws, seed)
                person = person or mine
            out[column] = _emails(locale, mine, draws, seed) if kind == "email" else mine[kind]
        elif kind in ADDRESS_KINDS:
            if address is None or kind in taken:
                wanted = {k for k in kinds.values() if k in ADDRESS_KINDS} if address is None else {kind}
                fresh = _addresses(locale, wanted, draws, seed)
                address = address or fresh
                out[column] = fresh[kind]
            else:
                out[column] = address[kind]
        elif kind == "phone":
            out[column] = render(locale, "phone_number", draws, seed)
        elif kind == "iban":
            out[column] = _ibans(locale, draws)
        elif kind == "ssn":
            out[column] = _ssns(draws)
        else:
            raise ValueError(f"unknown personal kind {kind!r}; one of {', '.join(PERSONAL_KINDS)}")
        taken.add(kind)
    return out


# --- pseudonyms of real values ---------------------------------------------------------------------------------


def value_keys(values: pl.Series, secret: bytes, salt: int = 0) -> np.ndarray:
    """A keyed 64-bit hash of each value (BLAKE2b with the run's secret): the stream that picks its pseudonym."""
    text = values.cast(pl.String).fill_null("")
    tag = salt.to_bytes(4, "little")
    return np.array([int.from_bytes(hashlib.blake2b(tag + value.encode(), key=secret, digest_size=8).digest(),
                                    "little") for value in text], dtype=np.uint64)


def pseudonyms(frame: pl.DataFrame, kinds: dict[str, str], locale: str, secret: bytes, seed: int,
               max_tries: int = 20) -> dict[str, pl.Series]:
    """Each real row's personal columns (``kinds``) replaced by fake ones picked by a keyed hash of its real values:
    the same real entity (its values in these columns, together) gets the same fake values wherever it appears,
    and a fake value equal to the row's own real value is drawn again with another salt."""
    columns = [c for c in kinds if c in frame.columns]
    entity = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\x00") for c in columns], separator="\x1f")
    unique = frame.select(entity.alias("entity"), *columns).unique(subset="entity", maintain_order=True)
    result = {c: np.empty(unique.height, dtype=object) for c in columns}
    pending = np.ones(unique.height, dtype=bool)
    for salt in range(max_tries):
        if not pending.any():
            break
        rows = unique.filter(pl.Series(pending))
        draws = Draws(rows.height, keys=value_keys(rows.get_column("entity"), secret, salt))
        fake = fake_columns({c: kinds[c] for c in columns}, locale, draws, seed)
        same = np.zeros(rows.height, dtype=bool)
        for c in columns:
            real = rows.get_column(c).cast(pl.String).to_numpy()
            if kinds[c] not in COMPONENT_KINDS:
                same |= fake[c] == real
        index = np.flatnonzero(pending)
        keep = ~same if salt < max_tries - 1 else np.ones(rows.height, dtype=bool)
        for c in columns:
            result[c][index[keep]] = fake[c][keep]
        pending[index[keep]] = False
    lookup = pl.DataFrame({"entity": unique.get_column("entity"),
                           **{f"__fake_{c}": pl.Series(result[c], dtype=pl.String) for c in columns}})
    joined = frame.select(entity.alias("entity")).join(lookup, on="entity", how="left", maintain_order="left")
    out = {}
    for c in columns:
        nulls = frame.get_column(c).is_null()
        out[c] = joined.get_column(f"__fake_{c}").alias(c).set(nulls, None) if nulls.any() else \
            joined.get_column(f"__fake_{c}").alias(c)
    return out


def run_secret(seed: int) -> bytes:
    """The pseudonyms' key, derived from the run's seed: anyone holding the seed can test a guess of a real value
    against its pseudonym, so a recipe whose pseudonymised rows leave the house keeps its seed private."""
    from synthforge.seeds import derive_seed

    return derive_seed(seed, "pseudonyms").to_bytes(8, "little") * 4
