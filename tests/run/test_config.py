"""Tests of dataclass <-> YAML configs with overrides (vsml.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
import yaml

from vsml.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override_value,
    read_yaml_mapping,
)


@dataclass(frozen=True)
class Optim:
    kind: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 0.025
    clip: float | None = None


@dataclass(frozen=True)
class Model:
    hidden_sizes: tuple[int, ...] = (32,)
    window: tuple[int, str] = (3, "same")
    layer_norm: bool = False
    optim: Optim = Optim()


@dataclass(frozen=True)
class Experiment:
    name: str = "toy"
    seed: int = 42
    steps: int = 10
    data_dir: Optional[str] = None  # noqa: UP045 -- the old spelling must work too
    out: Path = Path("runs")
    tags: list[str] = field(default_factory=list)
    learner: dict[str, Any] = field(default_factory=lambda: {"name": "vsml"})
    model: Model = Model()
    fallback: Optim | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class Required:
    size: int


def test_defaults_from_empty_mapping():
    assert config_from_dict(Experiment, {}) == Experiment()


def test_nested_round_trip_through_dict_and_yaml(tmp_path: Path):
    config = Experiment(
        name="x",
        data_dir="/data",
        out=Path("/tmp/run"),
        tags=["a", "b"],
        learner={"name": "sgd", "learning_rate": 0.1, "hidden": [4, 4]},
        model=Model(hidden_sizes=(8, 4), window=(5, "valid"), layer_norm=True, optim=Optim("sgd", 1e-3, 5.0)),
        fallback=Optim(),
    )
    plain = config_to_dict(config)
    assert plain["model"] == {
        "hidden_sizes": [8, 4],
        "window": [5, "valid"],
        "layer_norm": True,
        "optim": {"kind": "sgd", "learning_rate": 1e-3, "clip": 5.0},
    }
    assert plain["out"] == "/tmp/run"
    assert config_from_dict(Experiment, plain) == config
    path = dump_config(config, tmp_path / "sub" / "config.yaml")
    assert yaml.safe_load(path.read_text())["model"]["hidden_sizes"] == [8, 4]
    assert load_config(Experiment, path) == config
    assert not list(path.parent.glob(".*.tmp"))


def test_unknown_nested_key_names_the_dotted_path_and_valid_keys():
    with pytest.raises(ConfigError) as info:
        config_from_dict(Experiment, {"model": {"optim": {"learning_rat": 0.1}}})
    message = str(info.value)
    assert "model.optim.learning_rat" in message
    assert "did you mean 'model.optim.learning_rate'" in message
    assert "kind, learning_rate, clip" in message


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'sed'.*did you mean 'seed'.*at the top level"):
        config_from_dict(Experiment, {"sed": 1})


@pytest.mark.parametrize(
    "data, key, expected, got",
    [
        ({"seed": "42"}, "seed", "expected int", "'42'"),
        ({"seed": 4.0}, "seed", "expected int", "4.0"),
        ({"seed": True}, "seed", "expected int", "True"),
        ({"name": 3}, "name", "expected str", "3"),
        ({"model": {"optim": {"learning_rate": "x"}}}, "model.optim.learning_rate", "expected float", "'x'"),
        ({"model": {"hidden_sizes": [8, "4"]}}, r"model.hidden_sizes\[1\]", "expected int", "'4'"),
        ({"model": {"hidden_sizes": 8}}, "model.hidden_sizes", r"expected tuple\[int, \.\.\.\]", "8"),
        ({"model": {"window": [3]}}, "model.window", r"2 items", r"\[3\]"),
        ({"model": {"optim": {"kind": "rmsprop"}}}, "model.optim.kind", "one of 'adam', 'sgd'", "'rmsprop'"),
        ({"data_dir": 5}, "data_dir", r"expected str \| None", "5"),
        ({"learner": ["vsml"]}, "learner", "expected dict", r"\['vsml'\]"),
        ({"model": 3}, "model", "expected a mapping", "3"),
    ],
)
def test_bad_values_name_key_type_and_value(data, key, expected, got):
    with pytest.raises(ConfigError, match=rf"'{key}'.*{expected}.*{got}"):
        config_from_dict(Experiment, data)


@pytest.mark.parametrize("value", [1, 0, "true", "yes", None, 1.0])
def test_bool_is_strict(value):
    with pytest.raises(ConfigError, match=r"'model.layer_norm': expected bool"):
        config_from_dict(Experiment, {"model": {"layer_norm": value}})


def test_accepted_conversions():
    config = config_from_dict(
        Experiment,
        {
            "data_dir": None,
            "out": "elsewhere",
            "model": {"hidden_sizes": [], "optim": {"learning_rate": 1, "clip": "1e-3"}},
            "fallback": {"kind": "sgd"},
        },
    )
    assert config.model.hidden_sizes == ()
    assert config.model.optim.learning_rate == 1.0 and isinstance(config.model.optim.learning_rate, float)
    assert config.model.optim.clip == 1e-3  # YAML 1.1 gives "1e-3" as a string
    assert config.out == Path("elsewhere")
    assert config.fallback == Optim(kind="sgd")


def test_dict_fields_are_taken_as_is():
    learner = {"name": "sgd", "anything": {"nested": [1, 2]}, "flag": 1}
    assert config_from_dict(Experiment, {"learner": learner}).learner == learner


def test_optional_nested_dataclass_reports_its_inner_error():
    with pytest.raises(ConfigError, match=r"unknown config key 'fallback.kindd'"):
        config_from_dict(Experiment, {"fallback": {"kindd": "sgd"}})


def test_post_init_errors_and_missing_required_keys():
    with pytest.raises(ConfigError, match=r"invalid config .*Experiment.*steps must be >= 1"):
        config_from_dict(Experiment, {"steps": 0})
    with pytest.raises(ConfigError, match=r"missing required config key 'size' \(int\)"):
        config_from_dict(Required, {})
    with pytest.raises(ConfigError, match=r"missing required config key 'inner.size'"):
        config_from_dict(Required, {}, path="inner")


def test_override_value_parsing():
    assert parse_override_value("1e-3") == 1e-3
    assert parse_override_value("-2.5E+2") == -250.0
    assert parse_override_value("0.05") == 0.05
    assert parse_override_value("7") == 7 and isinstance(parse_override_value("7"), int)
    assert parse_override_value("true") is True
    assert parse_override_value("[1, 2, 1e-3]") == [1, 2, 1e-3]
    assert parse_override_value("{name: sgd, lr: 1e-2}") == {"name": "sgd", "lr": 0.01}
    assert parse_override_value("null") is None
    assert parse_override_value("digits") == "digits"
    assert parse_override_value("'1e-3'") == 1e-3  # documented: any numeric-looking string is a number
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_override_value("[1, 2")


def test_apply_overrides_sets_nested_keys_without_mutating_input():
    data = {"model": {"optim": {"learning_rate": 0.1}}, "seed": 1}
    result = apply_overrides(
        data, ["model.optim.learning_rate=1e-3", "seed=7", "model.hidden_sizes=[64, 64]", "new.deep.key=x"]
    )
    assert result == {
        "model": {"optim": {"learning_rate": 1e-3}, "hidden_sizes": [64, 64]},
        "seed": 7,
        "new": {"deep": {"key": "x"}},
    }
    assert data == {"model": {"optim": {"learning_rate": 0.1}}, "seed": 1}
    assert apply_overrides(None, ["a=b=c"]) == {"a": "b=c"}  # only the first '=' separates


@pytest.mark.parametrize("override", ["seed", "=3", "model..optim=1", "model.=1"])
def test_malformed_overrides(override):
    with pytest.raises(ConfigError, match="malformed override"):
        apply_overrides({}, [override])


def test_override_through_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match=r"cannot set 'seed.x': 'seed' is 1"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_load_config_with_overrides(tmp_path: Path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: demo\nmodel:\n  hidden_sizes: [16, 16]\n  optim:\n    learning_rate: 1e-3\n")
    config = load_config(Experiment, path, ["model.optim.kind=sgd", "model.layer_norm=true", "steps=5"])
    assert config.name == "demo" and config.steps == 5
    assert config.model == Model(hidden_sizes=(16, 16), layer_norm=True, optim=Optim("sgd", 1e-3))
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown config key 'model.optim.lr'"):
        load_config(Experiment, path, ["model.optim.lr=1"])


def test_load_config_file_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="config file not found: .*missing.yaml"):
        load_config(Experiment, tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml must hold a mapping.*got list"):
        load_config(Experiment, listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
        load_config(Experiment, broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(Experiment, empty) == Experiment()


def test_yaml_is_read_safely(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Experiment, path)


def test_non_dataclass_arguments_are_type_errors():
    with pytest.raises(TypeError, match="dataclass type"):
        config_from_dict(dict, {})
    with pytest.raises(TypeError, match="dataclass instance"):
        config_to_dict({"a": 1})


def test_a_key_given_twice_is_an_error_not_the_last_one_winning(tmp_path: Path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\ntask: {dataset: digits, dataset: mnist}\n")
    with pytest.raises(ConfigError, match="key 'dataset' is given twice"):
        read_yaml_mapping(path)
    # A merge key's values may be overridden by the mapping's own keys (YAML's merge, not a repeat).
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert read_yaml_mapping(path)["other"] == {"x": 1, "y": 3}


# ----- integers beyond what JAX computes with ----------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("es.num_pairs=99999999999999999999", "es.num_pairs"),
        ("seed=100000000000000000000", "seed"),
        ("task.episode_length=10000000000000", "task.episode_length"),
        ("eval.seed=-2147483649", "eval.seed"),
        ("learner.hidden_sizes=[8, 10000000000000]", r"learner.hidden_sizes\[1\]"),  # a free-form mapping
    ],
)
def test_integers_beyond_int32_are_config_errors_naming_the_key(override, key):
    from vsml.run.experiment import load_experiment

    with pytest.raises(ConfigError, match=rf"'{key}'.*outside the 32-bit integers"):
        load_experiment("demo_digits", [override])


def test_int32_bounds_are_inclusive():
    from vsml.config import INT32_MAX, INT32_MIN, check_int32

    assert config_from_dict(Experiment, {"seed": INT32_MAX}).seed == INT32_MAX
    assert config_from_dict(Experiment, {"seed": INT32_MIN}).seed == INT32_MIN
    with pytest.raises(ConfigError, match="'seed'"):
        config_from_dict(Experiment, {"seed": INT32_MAX + 1})
    assert check_int32(10**6, "length") == 10**6
    with pytest.raises(ValueError, match=r"evaluate_online\(length=...\): 1000000000000 is outside"):
        check_int32(10**12, "evaluate_online(length=...)")


# ----- shipped configs ---------------------------------------------------------------------------------------


def test_shipped_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from vsml.config import resolve_config_path, shipped_config_names, shipped_configs_dir
    from vsml.run.experiment import load_experiment

    monkeypatch.chdir(tmp_path)
    names = shipped_config_names()
    assert {"demo_digits", "fig8/all", "cloning/backprop"} <= set(names)
    demo = shipped_configs_dir() / "demo_digits.yaml"
    for spelling in ("demo_digits", "demo_digits.yaml", "configs/demo_digits.yaml"):
        assert resolve_config_path(spelling) == demo
    assert load_experiment("fig8/all").name == load_experiment("configs/fig8/all.yaml").name
    (tmp_path / "demo_digits").write_text("name: mine\n")  # a file of that name here wins
    assert load_experiment("demo_digits").name == "mine"
    with pytest.raises(FileNotFoundError, match="did you mean 'demo_digits'.*fig8/all"):
        resolve_config_path("demo_digit")
    with pytest.raises(FileNotFoundError, match="not a shipped config"):
        resolve_config_path("../demo_digits")
