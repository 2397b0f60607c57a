"""Issue 41 (personal columns) and issue 40 item 2: personal data told by its values, written by Faker.

The real-looking tables are made here with Faker under seeds no run uses; the runs' values come from Faker's
lists through synthforge.data.fake, seeded from the recipe's seed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from faker import Faker

from synthforge.checks.suite import IdentifierLeak
from synthforge.data.fake import Draws, fake_columns, pseudonyms, run_secret
from synthforge.data.schema import ColumnKind, ColumnOverride, infer_schema
from synthforge.engine import run
from synthforge.errors import RecipeError
from synthforge.profile import profile_table, starter_recipe
from synthforge.recipe import load_recipe

_EMAIL = re.compile(r"^[a-z0-9._]+@[a-z0-9.\-]+\.[a-z]+$")


def people(n: int = 400, seed: int = 1234, locale: str = "en_US") -> pl.DataFrame:
    """Customers with real-looking names, e-mails, phones, addresses and IBANs, plus learned columns; ``telephone``
    is the German credit table's two-valued flag."""
    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)
    rows = [(fake.name(), fake.email(), fake.phone_number(), fake.street_address(), fake.iban()) for _ in range(n)]
    return pl.DataFrame({
        "customer_id": np.arange(5000, 5000 + n),
        "full_name": [r[0] for r in rows], "contact": [r[1] for r in rows], "mobile": [r[2] for r in rows],
        "home": [r[3] for r in rows], "account": [r[4] for r in rows],
        "telephone": rng.choice(["A191", "A192"], n), "age": rng.integers(18, 90, n),
        "balance": rng.lognormal(8, 1, n).round(2),
        "segment": rng.choice(["retail", "business"], n)})


def test_profile_finds_each_personal_kind_from_its_values_and_says_why():
    table = people()
    # Headers that say nothing: the values decide.
    blind = table.rename({"full_name": "c1", "contact": "c2", "mobile": "c3", "home": "c4", "account": "c5"})
    found = profile_table(blind)
    expected = {"c1": "person_name", "c2": "email", "c3": "phone", "c4": "street_address", "c5": "iban"}
    for column, kind in expected.items():
        spec = found.schema[column]
        assert spec.kind == ColumnKind.identifier and spec.personal == kind and spec.pii, (column, spec)
        assert spec.locale == ("en_GB" if kind == "iban" else "en_US") and "look like" in spec.note, spec.note
    assert found.schema["telephone"].kind == ColumnKind.categorical and found.schema["telephone"].personal is None
    recipe = yaml.safe_load(starter_recipe(found))
    assert recipe["source"]["columns"]["c2"] == {"kind": "identifier", "pii": "email"}
    assert recipe["source"]["locale"] == "en_US"
    text = starter_recipe(found)
    assert "e-mail addresses" in text and "IBANs whose check digits hold" in text


def test_first_and_last_names_alone_and_the_locale_the_values_suggest():
    fake = Faker("de_DE")
    fake.seed_instance(99)
    table = pl.DataFrame({"a": [fake.first_name() for _ in range(300)], "b": [fake.last_name() for _ in range(300)],
                          "c": [fake.phone_number() for _ in range(300)], "plz": [fake.postcode() for _ in range(300)],
                          "mail": [f"{fake.user_name()}{i}@example.com" for i in range(300)], "x": list(range(300))})
    schema = infer_schema(table)
    assert (schema["a"].personal, schema["b"].personal, schema["c"].personal) == ("first_name", "last_name", "phone")
    assert (schema["plz"].personal, schema["mail"].personal) == ("postcode", "email")
    # Five digits and a .com address suggest no country: they take the one the names and phones suggest.
    assert {schema[c].locale for c in ("a", "b", "c", "plz", "mail")} == {"de_DE"}
    assert infer_schema(table, locale="fr_FR")["a"].locale == "fr_FR"  # the recipe's source.locale wins


def test_a_header_only_raises_a_suspicion_a_two_valued_telephone_is_a_category():
    rng = np.random.default_rng(0)
    table = pl.DataFrame({"telephone": rng.choice(["A191", "A192"], 500), "email": rng.choice(["yes", "no"], 500),
                          "x": rng.normal(size=500)})
    schema = infer_schema(table)
    for column in ("telephone", "email"):
        spec = schema[column]
        assert spec.kind == ColumnKind.categorical and not spec.pii and spec.personal is None, spec
        assert "repeat" in spec.note
    # The same header over distinct values is an identifier whose values identifier_leak looks for everywhere.
    unique = pl.DataFrame({"telephone": [f"T{i:05d}" for i in range(500)], "x": rng.normal(size=500)})
    assert infer_schema(unique)["telephone"].kind == ColumnKind.identifier and infer_schema(unique)["telephone"].pii


def test_the_recipe_names_a_columns_personal_kind_and_locale(tmp_path):
    table = pl.DataFrame({"who": [f"user{i}" for i in range(200)], "x": list(range(200))})
    schema = infer_schema(table, {"who": ColumnOverride(kind=ColumnKind.identifier, pii="person_name", locale="it_IT")})
    assert (schema["who"].personal, schema["who"].locale) == ("person_name", "it_IT")
    (tmp_path / "r.yaml").write_text("source: {path: t.csv, locale: xx_YY}\noutput: {path: out}\n")
    with pytest.raises(RecipeError, match=r"r.yaml:1: source.locale: locale 'xx_YY' is not one Faker knows"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("source: {path: t.csv, columns: {who: {pii: nickname}}}\noutput: {path: out}\n")
    with pytest.raises(RecipeError, match="person_name"):
        load_recipe(tmp_path / "r.yaml")


def test_a_run_writes_realistic_personal_values_none_of_them_real(tmp_path, pm):
    table = people()
    table.write_csv(tmp_path / "people.csv")
    # Every row a training row: a fake value equal to any real one was drawn again (one equal to a held-out value,
    # which the run never reads, could only be chance).
    recipe = {"seed": 5, "source": {"path": "people.csv"}, "holdout": 0.0, "generator": {"name": "copula"},
              "output": {"path": "out", "rows": 500}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = run(tmp_path / "r.yaml", pm=pm)
    out = pl.read_csv(result.dataset_path)
    for column in ("full_name", "contact", "mobile", "home", "account"):
        assert not set(out[column].to_list()) & set(table[column].to_list()), column
        assert not out[column].str.starts_with("syn").any() and out[column].n_unique() > 0.9 * out.height, column
    assert out["full_name"].str.contains(r"^[A-Z][a-z'\-]+ [A-Z][A-Za-z'\-]+$").mean() > 0.95
    assert out["contact"].str.contains(_EMAIL.pattern).all()
    # The e-mail is made from the row's own name.
    last = out["full_name"].str.split(" ").list.last().str.to_lowercase()
    assert pl.DataFrame({"e": out["contact"], "l": last}).select(
        pl.col("e").str.contains(pl.col("l"), literal=True)).to_series().mean() > 0.8
    assert out["account"].str.contains(r"^GB\d{2}[A-Z]{4}\d{14}$").all()
    assert out["telephone"].is_in(["A191", "A192"]).all()  # learned as the category it is
    leak = next(c for c in result.checks if c.name == "identifier_leak")
    assert leak.passed and leak.score == 0
    saved = b"".join(path.read_bytes() for path in (Path(result.output_path) / "model").rglob("*") if path.is_file())
    assert not any(value.encode() in saved for column in ("full_name", "contact", "mobile", "home", "account")
                   for value in table[column].to_list())  # the model keeps kinds and locales, no real value
    # Same seed, same values; another seed, others.
    for seed, same in ((5, True), (6, False)):
        (tmp_path / "r2.yaml").write_text(yaml.safe_dump(recipe | {"seed": seed, "output": {"path": f"o{seed}",
                                                                                              "rows": 500}}))
        names = pl.read_csv(run(tmp_path / "r2.yaml", pm=pm).dataset_path)["full_name"].to_list()
        assert (names == out["full_name"].to_list()) is same


def test_real_rows_in_the_output_carry_pseudonyms_the_same_for_the_same_person_never_their_own(tmp_path, pm):
    table = people(300)
    table = pl.concat([table, table.head(50).with_columns(pl.col("customer_id") + 10_000)])  # 50 people twice
    table.write_csv(tmp_path / "people.csv")
    recipe = {"seed": 2, "source": {"path": "people.csv"}, "holdout": 0.0, "generator": {"name": "copula"},
              "output": {"path": "out", "mode": "augment", "rows": 100}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = pl.read_csv(run(tmp_path / "r.yaml", pm=pm).dataset_path)
    # The real rows, found by their learned values (a balance is one person's), beside their real personal values.
    real_rows = out.join(table.unique(subset=["balance", "age"]), on=["balance", "age"], suffix="_real")
    assert real_rows.height == table.height
    personal = ["full_name", "contact", "mobile", "home", "account"]
    for column in personal:
        assert (real_rows[column] != real_rows[f"{column}_real"]).all(), column
    # A real person (their personal values together) has one pseudonym, and another person another.
    entities = real_rows.select(*personal, *(f"{c}_real" for c in personal)).unique()
    assert entities.select(personal).n_unique() == entities.select(f"{c}_real" for c in personal).n_unique() == 300
    twice = real_rows.group_by("full_name_real", "contact_real").agg(pl.len(), pl.struct(personal).n_unique()) \
        .filter(pl.col("len") > 1)
    assert twice.height == 50 and (twice[personal[0]] == 1).all()  # in both their rows, the same pseudonyms


def test_pseudonyms_are_keyed_by_the_run_and_consistent_across_tables():
    customers = people(200)
    orders = customers.sample(500, with_replacement=True, seed=1).select("full_name", "contact")
    kinds = {"full_name": "person_name", "contact": "email"}
    a = pseudonyms(customers, kinds, "en_US", run_secret(7), 1)
    b = pseudonyms(orders, kinds, "en_US", run_secret(7), 1)
    lookup = dict(zip(customers["full_name"].to_list(), a["full_name"].to_list(), strict=True))
    assert [lookup[name] for name in orders["full_name"].to_list()] == b["full_name"].to_list()
    assert not (a["full_name"] == customers["full_name"]).any()
    other = pseudonyms(customers, kinds, "en_US", run_secret(8), 1)
    assert (other["full_name"] != a["full_name"]).mean() > 0.95


def write_shop(folder: Path, customers: int = 300, seed: int = 77) -> None:
    """customers (names, e-mails, phones) and their orders, each order repeating its customer's name and e-mail."""
    frame = people(customers, seed=seed).select("customer_id", "full_name", "contact", "mobile", "age", "balance")
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, customers, customers * 3)
    orders = pl.DataFrame({"order_id": np.arange(owner.size), "customer_id": frame["customer_id"].to_numpy()[owner],
                           "buyer": frame["full_name"].to_numpy()[owner],
                           "buyer_email": frame["contact"].to_numpy()[owner],
                           "amount": rng.lognormal(3, 1, owner.size).round(2)})
    frame.write_csv(folder / "customers.csv")
    orders.write_csv(folder / "orders.csv")
    recipe = {"seed": 4, "source": {"tables": {
        "customers": {"path": "customers.csv", "primary_key": "customer_id"},
        "orders": {"path": "orders.csv", "primary_key": "order_id", "foreign_keys": {"customer_id": "customers"}}}},
        "holdout": 0.2, "generator": {"name": "copula"}, "output": {"path": "out", "format": "csv"},
        "checks": [{"name": "identifier_leak"}]}  # what this is about; the distance gates judge two columns here
    (folder / "r.yaml").write_text(yaml.safe_dump(recipe))


def test_one_person_has_one_fake_name_in_every_row_of_related_tables(tmp_path, pm):
    write_shop(tmp_path)
    result = run(tmp_path / "r.yaml", pm=pm)
    folder = Path(result.dataset_path)
    customers, orders = pl.read_csv(folder / "customers.csv"), pl.read_csv(folder / "orders.csv")
    real = pl.read_csv(tmp_path / "customers.csv")
    assert not set(customers["full_name"].to_list()) & set(real["full_name"].to_list())
    joined = orders.join(customers, on="customer_id", how="inner")
    assert joined.height == orders.height > 0
    assert (joined["buyer"] == joined["full_name"]).all() and (joined["buyer_email"] == joined["contact"]).all()
    assert customers["contact"].str.contains(_EMAIL.pattern).all()


def test_fake_values_come_a_column_at_a_time_from_faker_lists_in_their_locale():
    """The speed is benchmarks/personal_values.py's (1M values a kind); here what the vectorised path writes."""
    draws = Draws(100_000, rng=np.random.default_rng(0))
    values = fake_columns({"name": "person_name", "city": "city", "zip": "postcode"}, "de_DE", draws, 0)
    assert len(values["name"]) == 100_000 and len(set(values["name"].tolist())) > 20_000
    fake = Faker("de_DE")
    cities = set(fake.provider("faker.providers.address").cities)
    assert set(values["city"].tolist()) == cities  # the whole list, not a pool of draws
    assert all(re.fullmatch(r"\d{5}", z) for z in values["zip"][:1000])
    ibans = fake_columns({"i": "iban"}, "de_DE", Draws(1000, rng=np.random.default_rng(1)), 0)["i"]
    assert all(int("".join(str(int(c, 36)) for c in v[4:] + v[:4])) % 97 == 1 for v in ibans)


def test_identifier_leak_counts_a_real_first_and_last_name_together():
    fake = Faker("en_US")
    fake.seed_instance(3)
    names = [(fake.first_name(), fake.last_name()) for _ in range(300)]
    table = pl.DataFrame({"given": [n[0] for n in names], "family": [n[1] for n in names], "x": list(range(300))})
    schema = infer_schema(table)
    assert schema["given"].personal == "first_name" and schema["family"].personal == "last_name"
    copied = table.head(40).with_columns(pl.col("x") + 1000)
    result = IdentifierLeak().run(table, None, copied, schema)
    assert not result.passed and result.details["columns"]["given+family"] == 40
    # Real first names beside real last names of other rows: real words, no real person.
    fresh = pl.DataFrame({"given": table["given"].head(60), "family": table["family"].tail(60),
                          "x": list(range(60))}).join(table.select("given", "family"), on=["given", "family"],
                                                       how="anti")
    result = IdentifierLeak().run(table, None, fresh, schema)
    assert fresh.height > 50 and result.passed and result.details["columns"]["given+family"] == 0


def test_fake_values_equal_to_a_real_one_are_drawn_again():
    from synthforge.data.identifiers import real_values_to_avoid, regenerate_columns

    plans = {"who": {"personal": "person_name", "locale": "en_US"}, "mail": {"personal": "email", "locale": "en_US"},
             "given": {"personal": "first_name", "locale": "en_US"}, "family": {"personal": "last_name",
                                                                                "locale": "en_US"}}
    # "Real" rows drawn the very way the run draws: without the guard, most would come out again.
    real = pl.DataFrame(regenerate_columns(plans, 5000, np.random.default_rng(0)))
    avoid = real_values_to_avoid(real, plans)
    assert set(avoid) == {"who", "mail", "given+family"}
    fresh = pl.DataFrame(regenerate_columns(plans, 5000, np.random.default_rng(0), avoid=avoid))
    unguarded = pl.DataFrame(regenerate_columns(plans, 5000, np.random.default_rng(0)))
    assert unguarded["who"].is_in(real["who"].implode()).mean() > 0.9
    assert not fresh["who"].is_in(real["who"].implode()).any() and not fresh["mail"].is_in(real["mail"].implode()).any()
    pairs = fresh.select(pl.concat_str("given", "family", separator="\x1f")).to_series()
    assert not pairs.is_in(avoid["given+family"].implode()).any()
    assert (fresh["given"] == fresh["who"].str.split(" ").list.first()).all()  # still one person per row


def test_single_words_are_names_only_when_nearly_all_are_listed_names():
    rng = np.random.default_rng(0)
    colours = ["Brown", "Green", "White", "Black", "Gray", "Red", "Blue", "Silver", "Orange", "Pink"]  # 5 surnames
    months = ["January", "February", "March", "April", "May", "June", "July", "August"]  # 4 first names
    table = pl.DataFrame({"colour": rng.choice(colours, 300), "month": rng.choice(months, 300),
                          "x": rng.normal(size=300)})
    schema = infer_schema(table)
    assert schema["colour"].kind == schema["month"].kind == ColumnKind.categorical
    assert schema["colour"].personal is None and schema["month"].personal is None
