"""The plugin contract: named random streams, sampling params, reserved names, the pool of rare values."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from pydantic import Field

import synthforge
from synthforge import GeneratorParams, hookimpl
from synthforge.baseline import GaussianCopula
from synthforge.data.encoder import RARE
from synthforge.errors import ConditionError, PluginError, RecipeError, SynthForgeError
from synthforge.generator import FitContext, Generator
from synthforge.plugins import get_plugin_manager
from synthforge.recipe import load_recipe
from synthforge.seeds import RandomStreams, derive_seed

from .conftest import DATA, basic_recipe


def test_streams_are_named_children_of_the_seed_and_never_seed_arithmetic():
    streams = RandomStreams(0)
    assert streams.seed_for("noise") == RandomStreams(0).seed_for("noise")
    assert streams.seed_for("noise") != streams.seed_for("validation noise")
    # seed + 1 made seed 0's second stream seed 1's first; named streams share nothing across seeds
    assert {RandomStreams(0).seed_for(n) for n in ("a", "b")} & {RandomStreams(1).seed_for(n) for n in ("a", "b")} \
        == set()
    assert streams.child("fit").seed_for("noise") == derive_seed(0, "fit", "noise")
    context = FitContext(seed=7)
    assert context.rng("init").integers(1 << 30) == context.rng("init").integers(1 << 30)
    assert context.rng("init").integers(1 << 30) != FitContext(seed=8).rng("init").integers(1 << 30)
    assert context.torch_generator("noise").initial_seed() == context.seed_for("noise")


def test_no_plugin_does_arithmetic_on_seeds():
    from pathlib import Path

    sources = [*Path(synthforge.__file__).parent.rglob("*.py"),
               *(Path(__file__).parent.parent / "plugins").glob("*/src/*/*.py")]
    offenders = [f"{path}:{number}" for path in sources
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if "seed +" in line or "seed+" in line or "hash((" in line]
    assert offenders == []


def test_a_subclass_defining_a_reserved_name_fails_when_it_is_created():
    with pytest.raises(PluginError, match=r"defines _draw, reserved by synthforge.Generator.*implements _fit"):
        class Clumsy(Generator):  # a helper named like the base class's machinery
            name = "clumsy"

            def _draw(self, n: int) -> int:
                return n
    with pytest.raises(PluginError, match=r"defines _finish, sample"):
        class Worse(GaussianCopula):
            def sample(self, n):  # type: ignore[override]
                return None

            def _finish(self):
                return None


class _Copula(GaussianCopula):
    name = "sampling_copula"

    class SampleParams(GeneratorParams):
        spread: float = Field(1.0, gt=0, description="Scale of the latent normals.")

    def _sample(self, n, conditions, rng):
        self.seen_spread_ = self.sample_params.spread
        return super()._sample(n, conditions, rng)


def test_sampling_params_are_validated_per_call_and_reset_after_it(adult):
    model = _Copula().fit(adult.head(500), context=FitContext(seed=0))
    model.sample(5, seed=1, spread=0.5)
    assert model.seen_spread_ == 0.5 and model.sample_params.spread == 1.0
    with pytest.raises(SynthForgeError, match=r"sampling params of generator 'sampling_copula'.*Known params: spread"):
        model.sample(5, seed=1, sprad=0.5)


def test_a_recipes_output_sampling_is_validated_against_the_generators_sample_params(write_recipe):
    class Plugin:
        @hookimpl
        def synthforge_generators(self):
            return [_Copula]

    pm = get_plugin_manager(entry_points=False, extra_plugins=[Plugin()])
    recipe = basic_recipe(sampling={"spread": 0.5})
    recipe["generator"]["name"] = "sampling_copula"
    assert load_recipe(write_recipe(recipe), pm=pm).output.sampling == {"spread": 0.5}
    recipe["output"]["sampling"] = {"steps": 3}
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+: output.sampling: .*steps.*Known params: spread"):
        load_recipe(write_recipe(recipe), pm=pm)


def test_defaults_are_changed_without_declaring_the_fields_again():
    from synthforge.nn import TrainingParams

    class Mine(TrainingParams):
        defaults: ClassVar[dict[str, Any]] = {"epochs": 7}

    assert Mine().epochs == 7 and TrainingParams().epochs == 100
    with pytest.raises(Exception, match="epochs"):
        Mine(epochs=0)  # the parent's bounds still hold
    with pytest.raises(TypeError, match="names epoch, not a field"):
        class Typo(TrainingParams):
            defaults: ClassVar[dict[str, Any]] = {"epoch": 7}


def _mostly_rare(rows: int = 2000) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    common = rng.choice(["a", "b", "c"], rows)
    # 40% of rows hold one of 800 values, each seen once or twice: all pooled as rare.
    rare = np.array([f"v{int(i)}" for i in rng.integers(0, 800, rows)])
    return pl.DataFrame({"city": np.where(rng.random(rows) < 0.4, rare, common), "x": rng.normal(size=rows)})


def test_the_pool_of_rare_values_is_never_sampled_even_when_it_is_common():
    table = _mostly_rare()
    model = synthforge.fit(table, "copula", seed=0, protect_rows_below=0)
    sample = model.sample(5000, seed=1)
    assert RARE not in set(sample["city"].to_list())
    assert model.pooled_redrawn_ > 1000  # about 40% of rows drew the pool and were drawn again
    shares = dict(sample["city"].value_counts(normalize=True).iter_rows())
    assert min(shares[value] for value in "abc") > 0.3  # the common values in their proportions among the rest


def test_a_column_that_is_nearly_all_rare_values_fails_with_a_pointer():
    rng = np.random.default_rng(1)
    table = pl.DataFrame({"born": [f"19{int(i)}" for i in rng.integers(0, 10_000, 3000)],
                          "x": rng.normal(size=3000)}).with_columns(
        pl.when(pl.int_range(0, 3000) < 60).then(pl.lit("1970")).otherwise(pl.col("born")).alias("born"))
    model = synthforge.fit(table, "copula", seed=0, columns={"born": "categorical"})
    with pytest.raises(SynthForgeError, match=r"pool of rare values of 'born'.*set its `kind`"):
        model.sample(2000, seed=0)


def test_the_pool_error_names_the_rules_that_refused_rows_too():
    from synthforge.constraints import Constraint
    from synthforge.data.schema import ColumnOverride, infer_schema

    rng = np.random.default_rng(1)
    kind = rng.choice(["a", "b", "c", "d"], 3000)
    table = pl.DataFrame({"born": [f"19{int(i)}" for i in rng.integers(0, 10_000, 3000)], "x": rng.normal(size=3000),
                          "kind": kind, "twin": kind})
    schema = infer_schema(table, {"born": ColumnOverride(kind="categorical")})
    # a rule of arithmetic is not mended in place (rule_repair), so rows that break it are drawn again
    schema = schema.model_copy(update={"constraints": [Constraint(check="abs(x) <= 1.5")]})
    model = GaussianCopula().fit(table, schema, FitContext(seed=0))
    # the copula draws |x| > 1.5 in about 13% of rows: the rule, not only the pool, refuses what it draws
    with pytest.raises(SynthForgeError, match=r"pool of rare values of 'born'.*the first draw: \d+% of rows.*"
                                              r"also broke 'abs\(x\) <= 1.5' in \d+% of rows"):
        model.sample(2000, seed=0)


def test_the_command_line_refuses_a_condition_on_the_pool(tmp_path):
    adult = pl.read_csv(DATA / "adult_4k.csv")
    synthforge.fit(adult, "copula", seed=0).save(tmp_path / "model")
    done = subprocess.run([sys.executable, "-m", "synthforge.cli", "sample", str(tmp_path / "model"), "-n", "10",
                           "-c", f"native-country={RARE}", "--out", str(tmp_path / "rows.csv")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "pooled" in done.stderr and not (tmp_path / "rows.csv").exists()
    with pytest.raises(ConditionError, match="pooled"):
        synthforge.load(tmp_path / "model").sample(10, conditions={"native-country": RARE})


def test_generators_and_checks_are_collected_through_the_hooks_not_attributes():
    class NotAHook:
        synthforge_generators = staticmethod(lambda: [_Copula])  # an attribute, not a hookimpl

    class Renamed:
        @hookimpl(specname="synthforge_generators")
        def provide(self):
            return [_Copula]

    pm = get_plugin_manager(entry_points=False, extra_plugins=[Renamed()])
    pm.register(NotAHook(), name="not-a-hook")
    assert "sampling_copula" in pm.generators()
    described = {p["name"]: p["generators"] for p in pm.describe()["plugins"]}
    assert described["not-a-hook"] == []


def test_a_torch_plugin_writes_build_and_train_and_the_skeleton_keeps_the_rest():
    from synthforge.nn import TorchGenerator

    with pytest.raises(PluginError, match=r"defines _fit, _get_state.*_build and _train instead"):
        class Old(TorchGenerator):
            name = "old"

            def _fit(self, data, context):
                return None

            def _get_state(self):
                return {}, {}

    class Tiny(TorchGenerator):
        """A model of independent Gaussians: the smallest torch model with weights to save."""

        name = "tiny_torch"
        weights: ClassVar[dict[str, str]] = {"location_": "location."}

        def _build(self):
            import torch

            self.location_ = torch.nn.Linear(1, self.encoder_.width, bias=False)

        def _train(self, data, context):
            import torch

            from synthforge.nn import History

            with torch.no_grad():
                self.location_.weight[:, 0] = torch.as_tensor(data.mean(axis=0), device=self.device_)
            return History(epochs=[{"loss": 0.0}], best_epoch=1)

        def _sample(self, n, conditions, rng):
            import torch

            with torch.no_grad():
                centre = self.location_(torch.ones(1, 1)).numpy()[0]
            return centre + 0.1 * rng.standard_normal((n, len(centre)))

    table = pl.read_csv(DATA / "adult_4k.csv").select("age", "hours-per-week").head(500)
    model = Tiny().fit(table, context=FitContext(seed=0, protect_rows_below=0))  # a loaded model protects none
    assert str(model.device_) == "cpu" and not model.location_.training
    assert model.history_.best_epoch == 1
    from pathlib import Path
    from tempfile import mkdtemp

    saved = model.save(Path(mkdtemp()) / "model")
    loaded = Tiny.load(saved)
    assert loaded.sample(50, seed=3).equals(model.sample(50, seed=3))
    assert len(loaded.history_.epochs) == 1
