import pytest

from seva_plugin.errors import ConfigError
from seva_plugin.pipeline.config import apply_overrides, load_config, source_spec, split_spec

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


def test_load_config_leaves_the_callers_dicts_alone():
    """Overrides used to write into the caller's nested dicts (``api.build(cfg, overrides)`` twice
    built the second time with the first call's overrides)."""
    import copy

    from seva_plugin.pipeline.config import fingerprint

    config = {**BASE, "backend": {"name": "hf", "batch_size": 4}, "augment": {"name": "diffusion_noise", "step": 500}}
    before = copy.deepcopy(config)
    cfg = load_config(config, ["backend.batch_size=32", "augment.step=800", "output.overwrite=true"])
    assert config == before
    assert cfg.backend["batch_size"] == 32 and cfg.augment["step"] == 800
    # the fingerprint ignores what never changes the data
    assert fingerprint(cfg.to_dict()) == fingerprint(load_config(config, ["backend.batch_size=32", "augment.step=800", "limit=3"]).to_dict())
    assert fingerprint(cfg.to_dict()) != fingerprint(load_config(config).to_dict())
    # nor does the output format: a build's journal can be written as JSONL, then as Parquet
    assert fingerprint(cfg.to_dict()) == fingerprint(load_config(config, ["backend.batch_size=32", "augment.step=800", "output.format=parquet"]).to_dict())


def test_a_writers_own_output_keys_are_accepted_and_checked_by_the_writer(tmp_path):
    """``output.image_paths`` (documented) was refused as an unknown key before any writer saw it."""
    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.pipeline.build import Build

    model = build_tiny_llava(tmp_path / "llava")
    (tmp_path / "p.jsonl").write_text('{"id": "a", "image": "x.png", "question": "Q?"}\n')
    config = {
        "model": model,
        "template": "llava",
        "source": {"file": str(tmp_path / "p.jsonl")},
        "output": {"dataset_dir": str(tmp_path / "data"), "name": "d"},
    }
    assert load_config({**config, "output": {**config["output"], "image_paths": "absolute"}}).output["image_paths"] == "absolute"
    build = Build({**config, "output": {**config["output"], "image_paths": "absolute"}})
    assert build.writer.image_paths == "absolute"
    with pytest.raises(ConfigError, match="unknown key 'image_path' in output.*Did you mean 'image_paths'"):
        Build({**config, "output": {**config["output"], "image_path": "absolute"}})


def test_a_missing_local_model_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    """``models/llava`` next to a ``models/`` folder is a local path: missing, it fails at once
    (it used to pass as a hub id and cost minutes of hub retries)."""
    from seva_plugin.pipeline.model_paths import check_model_path, looks_local

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert looks_local("models/llava") and looks_local("./x") and looks_local("/abs/x") and looks_local("a/b/c")
    assert not looks_local("llava-hf/llava-1.5-7b-hf")
    with pytest.raises(ConfigError, match="model: model path not found: models/llava"):
        check_model_path("models/llava", "model")
    with pytest.raises(ConfigError, match="has no config.json"):
        check_model_path("models", "model")
    monkeypatch.setattr("seva_plugin.pipeline.model_paths.check_hub_id", lambda *a: None)  # the hub rule: test_guarantees.py
    check_model_path("llava-hf/llava-1.5-7b-hf", "model")  # a hub id passes the path rule
    # CSR's CLIP goes through the same rule
    from seva_plugin.registry import get_registry

    with pytest.raises(ConfigError, match="clip_model: model path not found: models/clip"):
        get_registry().get("strategy", "csr").build({"clip_model": "models/clip"}, "strategy")


def test_a_key_a_template_sets_is_removed_by_a_tilde_override():
    """`source.preset=null` could not drop the llava template's preset when switching to jsonl:
    null is a value, and the jsonl source has no preset key ("unknown key 'preset'")."""
    template = {**BASE, "source": {"file": "x.json", "format": "llava", "preset": "seva"}}
    cfg = load_config(template, ["source.file=p.jsonl", "source.format=jsonl", "~source.preset"])
    assert cfg.source == {"file": "p.jsonl", "format": "jsonl"}
    assert "preset" in template["source"]  # the caller's dict is left alone
    with pytest.raises(ConfigError, match=r"source has no key 'prest' to remove\. Did you mean 'preset'\?"):
        load_config(template, ["~source.prest"])
    with pytest.raises(ConfigError, match="takes no value"):
        load_config(template, ["~source.preset=seva"])


def test_a_flow_mapping_without_spaces_means_what_a_shell_user_typed():
    """`source={file:x,format:jsonl}` was read by YAML as the keys 'file:x' and 'format:jsonl' with
    no values, and failed with a misleading message."""
    cfg = load_config(BASE, ["source={file:/data/p.jsonl,format:jsonl}"])
    assert cfg.source == {"file": "/data/p.jsonl", "format": "jsonl"}
    data = apply_overrides({}, ["a={GPU:1,n:{x:2.5,url:ray://h:10001}}", 'b={"k:v": null}', "c={k: v}", "d=[x:1]"])
    assert data["a"] == {"GPU": 1, "n": {"x": 2.5, "url": "ray://h:10001"}}
    assert data["b"] == {"k:v": None}  # a quoted key keeps its meaning
    assert data["c"] == {"k": "v"} and data["d"] == ["x:1"]


def test_the_command_line_takes_tilde_overrides_anywhere():
    from seva_plugin.commands.cli import parse_args

    args = parse_args(["build", "c.yaml", "--no-progress", "~source.preset", "seed=1"])
    assert args.overrides == ["~source.preset", "seed=1"]
