import pytest

from seva_plugin.build.config import apply_overrides, load_config, source_spec, split_spec
from seva_plugin.errors import ConfigError

BASE = {"model": "m", "template": "llava", "source": {"file": "x.jsonl"}, "output": {"name": "d"}}


def test_dotted_overrides_parse_values_as_yaml():
    data = apply_overrides({"augment": "moco", "backend": {"name": "hf"}}, ["backend.batch_size=32", "augment.blur_p=0.1", "seed=3", "output.overwrite=true"])
    assert data["backend"] == {"name": "hf", "batch_size": 32}
    assert data["augment"] == {"name": "moco", "blur_p": 0.1}
    assert data["seed"] == 3 and data["output"]["overwrite"] is True


def test_unknown_top_level_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_config({**BASE, "augmnt": {}})
    assert "Did you mean 'augment'" in str(err.value) and "Allowed:" in str(err.value) and "backend" in str(err.value)


def test_required_keys_and_output_defaults():
    with pytest.raises(ConfigError, match="'model' is required"):
        load_config({k: v for k, v in BASE.items() if k != "model"})
    cfg = load_config(BASE)
    assert cfg.output == {"dataset_dir": "data", "name": "d", "overwrite": False, "writer": "llamafactory"}
    assert cfg.augment == {"name": "diffusion_noise", "step": 500} and cfg.seed == 0


def test_bad_override_and_missing_file():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(BASE, ["augment.step"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/build.yaml")


def test_specs():
    assert split_spec("seva", "strategy") == ("seva", {})
    assert split_spec({"name": "diffusion_noise", "step": 8}, "augment") == ("diffusion_noise", {"step": 8})
    assert source_spec({"dataset": "x", "dataset_dir": "d"}) == ("llamafactory", {"dataset": "x", "dataset_dir": "d"})
    assert source_spec({"file": "a.json", "format": "llava", "preset": "seva"}) == ("llava", {"file": "a.json", "preset": "seva"})
    assert source_spec({"file": "a.jsonl"})[0] == "jsonl"
    with pytest.raises(ConfigError):
        split_spec({"step": 3}, "augment")
