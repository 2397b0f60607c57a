"""Columns that hold people's names, contact details or addresses, recognised by header or by content.

Such a column is an identifier (never learned, regenerated) unless the recipe sets its kind, and
whatever it is learned as it stays marked ``pii``: the ``identifier_leak`` gate then looks for its
real values in every output column. Content is recognised without any download: e-mail and phone
number patterns, street addresses, and a short list of common given names and surnames (most
frequent in the US census and social-security records, facts in the public domain): a column most
of whose values hold one of them is a column of names.
"""

from __future__ import annotations

import re

import polars as pl

_PERSONAL_NAME = re.compile(
    r"(^|[_\-\s.])(e-?mail|phone|telephone|tel|mobile|cell|fax|ssn|passport|surname|forename|"
    r"(first|last|given|family|full|middle|maiden|user)[_\-\s]?name|name|address|street|addr|"
    r"postcode|zip[_\-\s]?code|ip[_\-\s]?address)($|[_\-\s.])",
    re.IGNORECASE,
)
# "name" alone also ends names of things (product_name, city_name): those are not about people.
_NAME_OF_A_THING = re.compile(
    r"(product|item|city|country|state|region|company|org|organisation|organization|department|dept|"
    r"file|host|table|column|brand|category|model|station|team|street|event|drug|course|school|"
    r"job|plan|program|programme|class|type|group|store|shop)[_\-\s.]?name", re.IGNORECASE)

_EMAIL = r"^[\w.+\-']+@[\w\-]+(\.[\w\-]+)+$"
_PHONE = r"^\+?[\d][\d\s().\-]{6,18}\d$"
_STREET = (r"(?i)^\d+[a-z]?\s+(\w+\s+){1,4}(st|street|ave|avenue|rd|road|blvd|boulevard|lane|ln|dr|drive|way|"
           r"court|ct|place|pl|square|sq|terrace|close|crescent|highway|hwy)\.?\b")

_GIVEN_TEXT = """
james john robert michael william david richard joseph thomas charles christopher daniel matthew anthony mark
donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason jeffrey ryan jacob
gary nicholas eric jonathan stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick
raymond jack dennis jerry tyler aaron jose adam nathan henry douglas zachary peter kyle walter ethan jeremy
harold keith christian roger noah gerald carl terry sean austin arthur lawrence jesse dylan bryan joe jordan
billy bruce albert willie gabriel logan alan juan wayne roy ralph randy eugene vincent russell elijah louis
bobby philip johnny mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty
margaret sandra ashley kimberly emily donna michelle carol amanda dorothy melissa deborah stephanie rebecca
sharon laura cynthia kathleen amy angela shirley anna brenda pamela emma nicole helen samantha katherine
christine debra rachel carolyn janet catherine maria heather diane ruth julie olivia joyce virginia victoria
kelly lauren christina joan evelyn judith megan andrea cheryl hannah jacqueline martha gloria teresa ann sara
madison frances kathryn janice jean abigail alice judy sophia grace denise amber doris marilyn danielle
beverly isabella theresa diana natalie brittany charlotte marie kayla alexis lori mohammed muhammad ahmed ali
fatima wei li jun maria jose carlos luis miguel ana juan pedro sofia lucas hugo leon louise jan anne pierre
marco giulia
"""
_GIVEN = _GIVEN_TEXT.split()
_FAMILY_TEXT = """
smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson
anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis
robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera
campbell mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart
morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim
cox ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo
sanders patel myers long ross foster jimenez powell jenkins perry russell sullivan bell coleman butler
henderson barnes gonzales fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds
griffin wallace moreno west cole hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford
castro marshall owens harrison fernandez mcdonald woods washington kennedy wells vargas henry chen freeman
webb tucker guzman burns crawford olson simpson porter hunter gordon mendez silva shaw snyder mason dixon
munoz hunt hicks holmes palmer wagner black robertson boyd rose stone salazar fox warren mills meyer rice
schmidt garza daniels ferguson nichols stephens soto weaver ryan gardner payne grant dunn kelley spencer
hawkins arnold pierce vazquez hansen peters santos hart bradley knight elliott cunningham duncan armstrong
hudson carroll lane riley andrews alvarado ray delgado berry perkins hoffman johnston matthews pena richards
willis carpenter lawrence sandoval wang zhang liu yang huang zhao wu zhou xu sun ma zhu hu guo muller
schneider fischer weber becker schulz rossi russo ferrari esposito bianchi martin bernard dubois durand moreau
singh kumar sharma khan
"""
_FAMILY = _FAMILY_TEXT.split()
_KNOWN_NAMES = pl.Series(sorted(set(_GIVEN) | set(_FAMILY)))
SAMPLE_VALUES = 2000


def name_looks_personal(name: str) -> bool:
    """Whether a column's header says it holds people's names, contact details or addresses."""
    return bool(_PERSONAL_NAME.search(name)) and not _NAME_OF_A_THING.search(name)


def content_looks_personal(series: pl.Series) -> str | None:
    """What personal data a text column's values look like ("e-mail addresses", …), or None."""
    if series.dtype not in (pl.String, pl.Categorical) and not isinstance(series.dtype, pl.Enum):
        return None
    values = series.cast(pl.String).drop_nulls().unique().head(SAMPLE_VALUES).str.strip_chars()
    if values.len() < 5:
        return None
    share = {
        "e-mail addresses": values.str.contains(_EMAIL).mean(),
        "phone numbers": (values.str.contains(_PHONE) & (values.str.count_matches(r"\d") >= 7)
                          & values.str.contains(r"^\+|[\s().\-]")).mean(),
        "street addresses": values.str.contains(_STREET).mean(),
    }
    for what, found in share.items():
        if (found or 0) >= 0.8:
            return what
    # Names: most distinct values made of one to four capitalised words, most of them holding a known name.
    shaped = values.filter(values.str.contains(r"^[A-Z][a-zA-Z'\-]+(,?\s+[A-Z][a-zA-Z'\-.]*){0,3}$"))
    if shaped.len() < 0.8 * values.len():
        return None
    # One row per word, then whether any word of each value is a known name: plain column operations.
    words = pl.DataFrame({"word": shaped.str.to_lowercase().str.extract_all(r"[a-z]+")}) \
        .with_row_index("value").explode("word")
    known = words.group_by("value").agg(pl.col("word").is_in(_KNOWN_NAMES.implode()).any()) \
        .get_column("word").mean() or 0.0
    return "people's names" if known >= 0.5 else None
