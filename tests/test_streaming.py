"""Sources larger than memory (issue 19, item 1): chunks, the seeded split, training from disk, copy protection
counted out of memory, and a run whose memory stays under a ceiling smaller than its table."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from synthforge.data.streaming import EncodedRows, HashCounter, StreamedSource, row_uniforms
from synthforge.engine import run
from synthforge.errors import RecipeError
from synthforge.generator import FitContext
from synthforge.plugins import get_plugin_manager

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def adult_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("streamed") / "adult.parquet"
    pl.read_csv(DATA / "adult_4k.csv").write_parquet(path, row_group_size=700)
    return path


def test_a_rows_number_depends_on_its_position_only():
    whole = row_uniforms(5, 0, 10_000)
    pieces = np.concatenate([row_uniforms(5, start, 1_000) for start in range(0, 10_000, 1_000)])
    assert np.array_equal(whole, pieces)
    assert not np.array_equal(whole, row_uniforms(6, 0, 10_000))
    assert whole.min() >= 0 and whole.max() < 1 and abs(whole.mean() - 0.5) < 0.01


@pytest.mark.parametrize("format", ["parquet", "csv", "ipc"])
def test_the_split_and_the_samples_are_the_same_in_any_chunks(tmp_path: Path, format: str):
    table = pl.read_csv(DATA / "adult_4k.csv").with_row_index("position")
    path = tmp_path / f"adult.{format}"
    {"parquet": table.write_parquet, "csv": table.write_csv, "ipc": table.write_ipc}[format](path)
    split = {}
    for chunk_rows in (1_000, 1_500):
        source = StreamedSource(path, format, seed=9, holdout_fraction=0.25, chunk_rows=chunk_rows)
        assert source.rows == 4_000
        training = pl.concat(source.training_chunks()).get_column("position").to_list()
        train_sample, holdout_sample = source.samples(1_000, holdout=300)
        split[chunk_rows] = (training, train_sample.get_column("position").to_list(),
                             holdout_sample.get_column("position").to_list())
        assert len(training) == source.training_rows and source.holdout_rows == 4_000 - len(training)
        assert 850 < train_sample.height < 1_150 and holdout_sample.height <= 300
        assert set(train_sample.get_column("position")) <= set(training)
        assert not set(holdout_sample.get_column("position")) & set(training)
    assert split[1_000] == split[1_500]
    assert 900 < 4_000 - len(split[1_000][0]) < 1_100  # a quarter held out


def test_rare_hashes_counted_out_of_memory_equal_counting_in_memory(tmp_path: Path):
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 3_000, dtype=np.uint64)
    hashes = np.concatenate([hashes, hashes[:500], hashes[:100], hashes[:100]])  # some twice, some four times
    rng.shuffle(hashes)
    values, counts = np.unique(hashes, return_counts=True)
    for below in (2, 3, 5):
        counter = HashCounter(tmp_path, buckets=16)
        for chunk in np.array_split(hashes, 7):
            counter.add(chunk)
        found = counter.rare(below)
        assert np.array_equal(np.sort(found), values[counts < below])
    assert not list(tmp_path.iterdir())  # the buckets are gone


def test_training_from_disk_sees_every_row_once_an_epoch(tmp_path: Path):
    import torch

    from synthforge.nn.training import StreamedRows

    rows = np.arange(10_000, dtype=np.float32)[:, None].repeat(3, axis=1)
    encoded = EncodedRows.write(tmp_path / "rows.f32", np.array_split(rows, 4), 3, sample=rows[:100], block_rows=512)
    assert encoded.shape == (10_000, 3) and np.array_equal(encoded.read(700, 705), rows[700:705])
    with pytest.raises(TypeError, match="do not fit in memory"):
        np.asarray(encoded)
    streamed = StreamedRows(encoded, lambda block: block * 2, torch.device("cpu"))
    validation, blocks = streamed.split(0.1, torch.Generator().manual_seed(0))
    assert validation is not None and len(blocks) == 20 - 2
    count = streamed.training_rows(blocks)
    seen = torch.cat(list(streamed.batches(blocks, 100, count // 100, torch.Generator().manual_seed(1))))
    assert len(seen) == count // 100 * 100
    values = (seen[:, 0] / 2).long()
    assert len(values.unique()) == len(values)  # no row twice in an epoch
    assert not set(values.tolist()) & set((validation[:, 0] / 2).long().tolist())
    first = values[:1_000].double()
    assert first.std() > 2_000  # the batches mix rows from blocks all over the table
    # A resumed worker replays an epoch's draws without reading a block, and the next epoch sees the same batches
    # (an epoch that ends mid-group, at the end of the first group of 16 blocks of 500 rows, and at the table's end)
    even = StreamedRows(EncodedRows.write(tmp_path / "even.f32", [rows], 3, sample=rows[:100], block_rows=500),
                        lambda block: block, torch.device("cpu"))
    for batch, steps in ((100, 5), (250, 16 * 500 // 250), (100, 10_000 // 100)):
        read, replayed = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
        for _ in even.batches(list(range(20)), batch, steps, read):
            pass
        even.skip(list(range(20)), batch, steps, replayed)
        assert torch.equal(torch.rand(3, generator=read), torch.rand(3, generator=replayed)), (batch, steps)


def _recipe(tmp_path: Path, source: Path, **changes) -> Path:
    recipe = {"name": "streamed", "seed": 4,
              "source": {"path": str(source), "streaming": True, "sample_rows": 1_500, "chunk_rows": 1_000},
              "generator": {"name": "autoregressive", "params": {"epochs": 3, "batch_size": 256}},
              "output": {"mode": "synthesize", "rows": 2_000, "path": str(tmp_path / "out")},
              "checks": [{"name": "column_shapes", "min": 0.85}, {"name": "exact_copies"},
                         {"name": "pair_trends"}]}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        recipe[section] = value if not name else {**recipe[section], name: value}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_streamed_run_trains_on_every_row_and_is_reproducible(tmp_path: Path, adult_parquet: Path):
    messages: list[str] = []
    result = run(_recipe(tmp_path, adult_parquet), log=messages.append)
    assert result.rows["training"] + result.rows["holdout"] == 4_000
    assert 3_000 < result.rows["training"] < 3_400 and result.rows["synthetic"] == 2_000
    assert 1_200 < result.rows["checked_training"] < 1_800
    assert any(m.startswith("streaming adult.parquet: 4,000 rows in chunks of 1,000") for m in messages)
    assert result.generator.history_.epochs[-1]["epoch"] == 3
    assert {c.name for c in result.checks} >= {"column_shapes", "exact_copies", "pair_trends"}
    assert all(c.passed for c in result.checks)
    first = pl.read_csv(result.dataset_path)
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".")]  # no rows file or staging left
    again = run(_recipe(tmp_path, adult_parquet, output__path=str(tmp_path / "again")))
    assert pl.read_csv(again.dataset_path).equals(first)


def test_copy_protection_of_a_streamed_fit_protects_what_an_in_memory_fit_does(adult_parquet: Path):
    from synthforge.engine_streamed import TrainingChunks

    pm = get_plugin_manager()
    source = StreamedSource(adult_parquet, "parquet", seed=1, holdout_fraction=0.0, chunk_rows=900)
    table = pl.concat(source.training_chunks())
    in_memory = pm.get_generator("copula")().fit(table, None, FitContext(seed=0))
    schema = in_memory.schema_
    streamed = pm.get_generator("autoregressive")({"epochs": 1})
    streamed.fit_streamed(TrainingChunks(source, table.head(2_000)), schema, FitContext(seed=0))
    for attribute in ("_protected", "_protected_records"):
        ours, theirs = getattr(streamed, attribute), getattr(in_memory, attribute)
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert dict(ours[0]) == dict(theirs[0])
            assert set(ours[1].explode().to_list()) == set(theirs[1].explode().to_list())
            assert ours[1].explode().len() > 100


def test_what_a_streamed_run_cannot_do_is_refused_by_key(tmp_path: Path, adult_parquet: Path):
    with pytest.raises(RecipeError, match=r"source.streaming: true, but generator 'gan' trains on rows in memory"):
        run(_recipe(tmp_path, adult_parquet, generator={"name": "gan"}))
    with pytest.raises(RecipeError, match=r"output.mode 'augment' puts or reads real rows"):
        run(_recipe(tmp_path, adult_parquet, output__mode="augment"))
    with pytest.raises(RecipeError, match=r"a privacy budget reads every row"):
        run(_recipe(tmp_path, adult_parquet, privacy={"epsilon": 1.0}))
    assert not (tmp_path / "out").exists()


def test_a_csv_is_streamed_with_its_missing_markers(tmp_path: Path):
    rows = 3_000
    rng = np.random.default_rng(2)
    hours = [str(v) if v % 17 else "NA" for v in rng.integers(1, 80, rows)]
    table = pl.DataFrame({"hours": hours, "age": rng.integers(18, 90, rows),
                          "kind": rng.choice(["a", "b", "c"], rows)})
    path = tmp_path / "table.csv"
    table.write_csv(path)
    result = run(_recipe(tmp_path, path, checks=[{"name": "column_shapes"}]))
    synthetic = pl.read_csv(result.dataset_path, null_values=["NA", ""])
    assert synthetic.schema["hours"] == pl.Int64 and 0 < synthetic.get_column("hours").null_count() < 400


# VmHWM, the peak of this process's own memory map: ru_maxrss would count the test process's peak before the exec.
_MEASURED_RUN = """
import sys
from synthforge.engine import run
run(sys.argv[1])
print("PEAK", next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def _run_under(recipe: Path, ceiling_mb: float | None) -> float:
    """Run ``recipe`` in its own process, killed the moment its resident memory passes ``ceiling_mb``; its peak."""
    process = subprocess.Popen([sys.executable, "-c", _MEASURED_RUN, str(recipe)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            resident = next(int(line.split()[1]) for line in status.read_text().splitlines()
                            if line.startswith("VmRSS")) / 1024
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            resident = 0.0
        if ceiling_mb is not None and resident > ceiling_mb:
            process.kill()
            pytest.fail(f"the streamed run passed its memory ceiling: {resident:.0f} MB > {ceiling_mb:.0f} MB")
        time.sleep(0.05)
    out, err = process.communicate()
    assert process.returncode == 0, err[-3_000:]
    return int(out.split("PEAK")[-1]) / 1024


def test_a_table_larger_than_the_memory_ceiling_trains_under_it(tmp_path: Path):
    """The same recipe on 10,000 rows and on a table whose rows alone take more memory than the ceiling allows
    beyond that run's peak: the big one must stay under the small one's peak plus half its table."""
    rng = np.random.default_rng(0)

    def write(rows: int, path: Path) -> float:
        chunks = []
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            base = rng.standard_normal((n, 1))
            chunk = pl.DataFrame({f"x{j}": (base[:, 0] * (j % 5) + rng.standard_normal(n)) for j in range(48)})
            chunks.append(chunk.with_columns(pl.Series("kind", rng.choice(["red", "green", "blue"], n)),
                                             pl.Series("count", rng.poisson(3, n))))
        table = pl.concat(chunks)
        table.write_parquet(path, row_group_size=50_000)
        return table.estimated_size() / 2**20

    recipes = {}
    for name, rows in (("small", 10_000), ("large", 700_000)):
        folder = tmp_path / name
        folder.mkdir()
        size_mb = write(rows, folder / "table.parquet")
        recipes[name] = (_recipe(folder, folder / "table.parquet", source__sample_rows=5_000, source__chunk_rows=20_000,
                                 generator={"name": "vae", "params": {"epochs": 1, "batch_size": 4_000,
                                                                      "numeric_encoding": "quantile",
                                                                      "hidden_dim": 32, "latent_dim": 8,
                                                                      "layers": 1, "adapt_to_table": False}},
                                 output__rows=5_000, checks=[{"name": "column_shapes"}]), size_mb)
    small_peak = _run_under(recipes["small"][0], None)
    table_mb = recipes["large"][1]
    ceiling = small_peak + table_mb / 2
    assert table_mb > 200  # the table itself is larger than the room it is given
    large_peak = _run_under(recipes["large"][0], ceiling)
    manifest = json.loads((tmp_path / "large" / "out" / "manifest.json").read_text())
    assert manifest["rows"]["training"] > 520_000
    print(textwrap.dedent(f"""
        small run peak {small_peak:.0f} MB; table {table_mb:.0f} MB in memory; ceiling {ceiling:.0f} MB;
        large run peak {large_peak:.0f} MB"""))


def test_auto_streams_a_file_over_its_share_of_memory_and_otherwise_reads_it(tmp_path: Path, adult_parquet: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    from synthforge import engine_streamed
    from synthforge.recipe import load_recipe

    pm = get_plugin_manager()
    recipe = load_recipe(_recipe(tmp_path, adult_parquet, source__streaming="auto"), pm=pm)
    messages: list[str] = []
    assert engine_streamed.streamed_source(recipe, adult_parquet, pm, True, messages.append) is None
    monkeypatch.setattr(engine_streamed, "AUTO_SHARE_OF_MEMORY", 1e-12)  # this small file is now "big"
    source = engine_streamed.streamed_source(recipe, adult_parquet, pm, True, messages.append)
    assert source is not None and source.rows == 4_000
    # a generator that trains in memory: read into memory, and the log says why
    assert engine_streamed.streamed_source(recipe, adult_parquet, pm, False, messages.append) is None
    assert "is read into memory: generator 'autoregressive' trains on rows in memory" in messages[-1]
    assert engine_streamed.streamed_source(recipe, tmp_path / "missing.parquet", pm, True, messages.append) is None


def test_auto_judges_the_rows_and_their_width_in_memory_not_the_compressed_bytes(tmp_path: Path):
    """Issue 40: a 10,000,000-row parquet of 72 MB was read whole (9.4 GB and rising). Here 2,000,000 rows of few
    distinct values: about 0.1 MB on disk, 70 MB in memory."""
    from synthforge import engine_streamed
    from synthforge.data.streaming import estimate_in_memory
    from synthforge.recipe import load_recipe

    rows = 2_000_000
    adult = pl.read_csv(DATA / "adult_4k.csv").select("workclass", "education", "sex", "age", "hours-per-week")
    table = pl.concat([adult] * (rows // adult.height))
    table.write_parquet(tmp_path / "big.parquet", row_group_size=200_000)
    disk = (tmp_path / "big.parquet").stat().st_size
    estimate = estimate_in_memory(tmp_path / "big.parquet", "parquet")
    assert estimate is not None and estimate.rows == rows and estimate.exact_rows  # from the metadata
    assert estimate.bytes == pytest.approx(table.estimated_size(), rel=0.2) and estimate.bytes > 20 * disk
    memory = 2**30  # a 1 GiB machine: the file is a ten-thousandth of it, a run in memory about 0.9 GB
    assert disk < 0.01 * memory and engine_streamed.streams_by_size(estimate, disk, memory)
    assert not engine_streamed.streams_by_size(estimate, disk, 64 * 2**30)
    pm = get_plugin_manager()
    recipe = load_recipe(_recipe(tmp_path, tmp_path / "big.parquet", source__streaming="auto"), pm=pm)
    source = engine_streamed.streamed_source(recipe, tmp_path / "big.parquet", pm, True, print, memory=memory)
    assert source is not None and source.rows == rows
    # text: the rows are estimated from the first rows' bytes
    table.head(60_000).write_csv(tmp_path / "big.csv")
    text = estimate_in_memory(tmp_path / "big.csv", "csv")
    assert text is not None and text.rows == pytest.approx(60_000, rel=0.05) and not text.exact_rows


def test_validate_checks_a_streamed_source_on_its_sample(tmp_path: Path, adult_parquet: Path):
    from synthforge.engine import validate_recipe
    from synthforge.recipe import load_recipe

    pm = get_plugin_manager()
    notes = validate_recipe(load_recipe(_recipe(tmp_path, adult_parquet), pm=pm), pm)
    assert notes[0].startswith("4,000 rows, streamed; schema and rules checked on a sample of 1,")
    with pytest.raises(RecipeError, match="source.streaming: true, but generator 'gan'"):
        validate_recipe(load_recipe(_recipe(tmp_path, adult_parquet, generator={"name": "gan"}), pm=pm), pm)


def test_a_streamed_panel_is_judged_a_grid_as_its_protection_judged_it(tmp_path: Path):
    """60 stores × 100 weeks, every cell one record: a panel, whose records are unique on store × week by design.
    The copy protection counts every training row and finds the grid; the checks see a sample of 1,000 of the
    ~4,800 training rows, which fills a sixth of the grid, so judged on the sample alone its cells looked like
    people unique on what can be known — and the synthetic rows, landing on training cells as a panel's must,
    failed rare_combinations. The check now measures the grid's fill on the rows the table has."""
    rng = np.random.default_rng(0)
    stores, weeks = np.meshgrid(np.arange(60), np.arange(100), indexing="ij")
    level = rng.gamma(4.0, 250.0, 60)[stores.ravel()]
    season = 1 + 0.3 * np.sin(weeks.ravel() * 2 * np.pi / 52)
    panel = pl.DataFrame({"store": [f"S{s:02d}" for s in stores.ravel()], "week": weeks.ravel() + 1,
                          "sales": np.round(level * season * rng.lognormal(0, 0.1, stores.size), 2)})
    panel.sample(fraction=1.0, shuffle=True, seed=1).write_parquet(tmp_path / "panel.parquet", row_group_size=1_000)
    result = run(_recipe(tmp_path, tmp_path / "panel.parquet", source__sample_rows=1_000,
                         checks=[{"name": "rare_combinations"}, {"name": "exact_copies"}]))
    assert result.rows["checked_training"] < result.rows["training"] / 4  # the sample alone fills under 25%
    assert result.generator._protected_records is None  # the protection counted every row: a grid
    (check,) = [c for c in result.checks if c.name == "rare_combinations"]
    assert check.passed and check.details["skipped"], check.summary
    assert check.details["grid_fill"] == pytest.approx(result.rows["training"] / 6_000, abs=0.01)
    assert f"each of the {result.rows['training']:,} training records" in check.summary
