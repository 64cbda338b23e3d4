"""What a build guarantees whatever the input: nothing overwritten unasked, no two builds on one
output, config values type-checked, YAML bombs refused, clear errors (issue 15, items 1-5, 7, 11-13, 15).

None of these tests loads a model: a scripted backend stands in where a build must run.
"""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from helpers import answer, make_images, use_backends
from seva_plugin.errors import ConfigError, SevaError
from seva_plugin.interfaces import Backend
from seva_plugin.pipeline.config import load_config
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines
from seva_plugin.pipeline.journal import COMMIT, Journal, read_entries


# -- a build without a model -------------------------------------------------------------------
class Scripted(Backend):
    """Answers "red" on the clean view and "blue" on any other: every record gives a pair."""

    name = "scripted"

    def __init__(self, model, template, batch_size: int = 4):
        self.batch_size = batch_size

    def generate(self, requests):
        return [answer(["red" if r.view.clean else "blue"] * r.n) for r in requests]


@pytest.fixture
def scripted(monkeypatch):
    return use_backends(monkeypatch, Scripted)


@pytest.fixture
def fake_model(tmp_path) -> str:
    """A folder that passes the model-path rule; nothing ever loads it."""
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llava"}')
    return str(path)


@pytest.fixture
def config(fake_model, tmp_path) -> dict:
    names = make_images(tmp_path / "images", 4)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Colour?"}) + "\n" for i, n in enumerate(names)))
    return {
        "model": fake_model,
        "template": "llava",
        "source": {"file": str(prompts)},
        "backend": {"name": "scripted"},
        "output": {"dataset_dir": str(tmp_path / "data"), "name": "ds"},
    }


PAIR = {"id": "a", "prompt": "<image>Q?", "images": ["/abs/a.png"], "chosen": "red", "rejected": "blue"}


# -- item 1: check first, then replace ----------------------------------------------------------
def test_the_writer_refuses_before_it_replaces_the_data(tmp_path):
    """The data file used to be replaced before the locked re-check of dataset_info.json refused,
    leaving new data under an old manifest while the error said "nothing was changed"."""
    from seva_plugin.plugins.writers.llamafactory import LlamaFactoryWriter

    data = tmp_path / "data"
    data.mkdir()
    writer = LlamaFactoryWriter(dataset_dir=str(data), dataset_name="ds")
    writer.prepare(False)  # at build start the name is free
    (data / "ds.jsonl").write_text("the user's data\n")
    theirs = {"ds": {"file_name": "someone_else.json"}}  # registered by someone else during the build
    (data / "dataset_info.json").write_text(json.dumps(theirs))
    with pytest.raises(ConfigError, match="already has a different entry 'ds'"):
        writer.write(iter([PAIR]), overwrite=False)
    assert (data / "ds.jsonl").read_text() == "the user's data\n"
    assert json.loads((data / "dataset_info.json").read_text()) == theirs


# -- item 2: booleans and numbers are type-checked ----------------------------------------------
BASE = {"model": "m", "template": "llava", "source": {"file": "x.jsonl"}, "output": {"name": "d"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"output": {"name": "d", "overwrite": "false"}}, r"output.overwrite must be true or false, got 'false'"),
        ({"output": {"name": "d", "overwrite": 1}}, r"output.overwrite must be true or false, got 1"),
        ({"limit": "abc"}, r"limit must be an integer or null, got 'abc'"),
        ({"limit": -1}, r"limit must be at least 1, got -1"),
        ({"limit": 0}, r"limit must be at least 1, got 0"),
        ({"limit": True}, r"limit must be an integer or null, got True"),
        ({"seed": "x"}, r"seed must be an integer, got 'x'"),
        ({"seed": 1.5}, r"seed must be an integer, got 1.5"),
        ({"seed": -3}, r"seed must be at least 0, got -3"),
        ({"output": {"name": 7}}, r"output.name must be a string, got 7"),
        ({"output": {"name": "d", "dataset_dir": ["a"]}}, r"output.dataset_dir must be a string"),
    ],
)
def test_config_booleans_and_numbers_are_type_checked(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config({**BASE, **change})


def test_limit_from_an_override_is_checked_too():
    with pytest.raises(ConfigError, match="limit must be an integer or null, got 'abc'"):
        load_config(BASE, ["limit=abc"])
    with pytest.raises(ConfigError, match="limit must be at least 1"):
        load_config(BASE, ["limit=-1"])
    assert load_config(BASE, ["limit=3", "output.overwrite=false"]).limit == 3


def test_component_keys_of_optional_and_numeric_types_are_checked():
    """``int | None`` keys were never checked: ``image_max_pixels: abc`` reached the processor."""
    from seva_plugin.registry import get_registry

    hf = get_registry().get("backend", "hf")
    for params, message in [
        ({"image_max_pixels": "abc"}, "'image_max_pixels' must be an integer or null, got 'abc'"),
        ({"do_sample": "false"}, "'do_sample' must be true or false, got 'false'"),
        ({"temperature": "hot"}, "'temperature' must be a number, got 'hot'"),
        ({"temperature": float("nan")}, "'temperature' must be a finite number, got nan"),
        ({"batch_size": 2.0}, "'batch_size' must be an integer, got 2.0"),
        ({"device": 3}, "'device' must be a string or null, got 3"),
    ]:
        with pytest.raises(ConfigError, match=message):
            hf.build(params, "backend", model="m", template="llava")
    assert hf.build({"image_max_pixels": None, "temperature": 1, "device": "cpu"}, "backend", model="m", template="llava").temperature == 1


def test_overwrite_false_as_a_string_never_replaces_a_users_file(config, scripted):
    from seva_plugin.pipeline.build import Build

    data = os.path.dirname(config["source"]["file"]) + "/data"
    os.makedirs(data)
    with open(os.path.join(data, "dataset_info.json"), "w") as fh:
        json.dump({"ds": {"file_name": "theirs.json"}}, fh)
    with pytest.raises(ConfigError, match="output.overwrite must be true or false"):
        Build({**config, "output": {**config["output"], "overwrite": "false"}})
    assert json.load(open(os.path.join(data, "dataset_info.json"))) == {"ds": {"file_name": "theirs.json"}}


# -- item 3: one build per output ---------------------------------------------------------------
def test_a_second_build_on_the_same_output_refuses_at_once_naming_the_other(config, scripted):
    """Two builds on one output used to both append to the journal: every pair twice, for good."""
    from seva_plugin.pipeline.build import Build, build
    from seva_plugin.pipeline.dataset_files import DatasetFiles
    from seva_plugin.pipeline.files import output_lock

    files = DatasetFiles(config["output"]["dataset_dir"], "ds")
    os.makedirs(files.work_dir)
    second = Build(config)
    started = time.time()
    with output_lock(files.lock, "dataset 'ds'"):  # the other build holds the output
        with pytest.raises(SevaError, match=rf"another build \(pid {os.getpid()}, since .*\) is writing dataset 'ds'") as err:
            second.run(progress=False)
    assert time.time() - started < 10
    assert "wait for it to finish" in str(err.value)
    assert not os.path.exists(files.journal) or not list(read_entries(files.journal))
    result = build(config, progress=False)  # the lock is released with the other build
    assert result.kept == 4
    assert [json.loads(line)["id"] for line in open(result.data_file)] == ["p0", "p1", "p2", "p3"]


# -- item 4: safe output names --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "sub/x", "/abs", "..", ".", ".hidden", "", "a\x00b", "a\nb", "x" * 300, "a\\b", "\ud800"])
def test_output_name_must_be_a_plain_file_name(name, config, scripted):
    from seva_plugin.pipeline.build import Build

    with pytest.raises(ConfigError, match="output.name"):
        load_config({**config, "output": {**config["output"], "name": name}})
    with pytest.raises(ConfigError, match="output.name"):
        Build({**config, "output": {**config["output"], "name": name}})
    assert not os.path.exists(os.path.join(os.path.dirname(config["output"]["dataset_dir"]), "x.jsonl"))


def test_dataset_files_refuse_an_unsafe_name_for_every_caller(tmp_path):
    from seva_plugin.pipeline.dataset_files import DatasetFiles

    with pytest.raises(ConfigError, match="name"):
        DatasetFiles(str(tmp_path), "../x")
    assert DatasetFiles(str(tmp_path), "seva_llava_t500-v2.1").data.endswith("seva_llava_t500-v2.1.jsonl")


# -- item 5: permissions, symlinks, directories ---------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_honour_the_umask(tmp_path, umask_022):
    atomic_write_json(str(tmp_path / "dataset_info.json"), {})
    atomic_write_lines(str(tmp_path / "d.jsonl"), ["{}\n"])
    assert mode(tmp_path / "dataset_info.json") == mode(tmp_path / "d.jsonl") == 0o644
    os.umask(0o002)
    atomic_write_json(str(tmp_path / "team.json"), {})
    assert mode(tmp_path / "team.json") == 0o664


def test_a_replaced_file_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "dataset_info.json"
    path.write_text("{}")
    os.chmod(path, 0o664)  # a shared team folder
    atomic_write_json(str(path), {"a": 1})
    assert mode(path) == 0o664 and json.loads(path.read_text()) == {"a": 1}


def test_a_symlinked_registry_is_updated_through_the_link(tmp_path, umask_022):
    shared = tmp_path / "team"
    shared.mkdir()
    (shared / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(shared / "dataset_info.json", data / "dataset_info.json")
    from seva_plugin.plugins.writers.llamafactory import LlamaFactoryWriter

    LlamaFactoryWriter(dataset_dir=str(data), dataset_name="ds").write(iter([PAIR]), overwrite=False)
    assert os.path.islink(data / "dataset_info.json")
    info = json.loads((shared / "dataset_info.json").read_text())
    assert set(info) == {"mine", "ds"}
    assert not [n for n in os.listdir(shared) if n.endswith(".tmp")]


def test_a_registry_that_is_a_directory_is_a_clear_error(config, scripted):
    from seva_plugin.pipeline.build import Build

    os.makedirs(os.path.join(config["output"]["dataset_dir"], "dataset_info.json"))
    with pytest.raises(SevaError, match=r"dataset_info.json is a directory, not a file"):
        Build(config)
    with pytest.raises(SevaError, match="is a directory, not a file"):
        atomic_write_json(os.path.join(config["output"]["dataset_dir"], "dataset_info.json"), {})


# -- items 7 and 12: YAML limits and errors ---------------------------------------------------------
def bomb(levels: int, key: str, indent: str = "  ", width: int = 9) -> str:
    """The billion-laughs document: ``levels`` levels of ``width`` aliases each, the last under ``key``."""
    lines = [f"{indent}x0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for k in range(1, levels):
        name = key if k == levels - 1 else f"x{k}"
        lines.append(f"{indent}{name}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_in_a_config_file_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("model: m\ntemplate: llava\nsource: {file: x.jsonl}\noutput: {name: d}\nbackend:\n  name: hf\n" + bomb(7, "temperature"))
    assert path.stat().st_size < 1000  # 9**7 strings once expanded
    started = time.time()
    with pytest.raises(ConfigError, match="aliases") as err:
        load_config(str(path))
    assert time.time() - started < 5
    assert len(str(err.value)) < 600


def test_a_yaml_alias_bomb_in_an_override_is_refused():
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, 7)]
    with pytest.raises(ConfigError, match="override 'augment.step=.*aliases"):
        load_config(BASE, ["augment.step=[" + ", ".join(levels) + "]"])


def test_a_huge_config_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("model: m\n#" + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(str(path))


def test_error_messages_never_print_huge_values():
    from seva_plugin.registry import get_registry

    with pytest.raises(ConfigError) as err:
        get_registry().get("backend", "hf").build({"temperature": "x" * 1_000_000}, "backend", model="m", template="llava")
    assert len(str(err.value)) < 600 and "characters" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config({**BASE, "source": ["y" * 1_000_000]})
    assert len(str(err.value)) < 600
    with pytest.raises(ConfigError) as err:
        load_config({**BASE, "z" * 1_000_000: 1})
    assert len(str(err.value)) < 1000


def test_a_yaml_error_in_an_override_is_a_clear_message():
    with pytest.raises(ConfigError, match=r"override 'augment.step=\[1, 2' is not valid YAML"):
        load_config(BASE, ["augment.step=[1, 2"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(BASE, ["source.file={a: b"])


# -- item 11: a damaged journal says what to do ---------------------------------------------------
def journal_with(tmp_path, lines: list[bytes]) -> str:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"".join(lines))
    return str(path)


HEADER = b'{"kind": "header", "fingerprint": "fp"}\n'
ENTRY = b'{"kind": "reject", "id": "a", "reason": "r", "code": "c"}\n'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([b'{"kind": "head\n', COMMIT, ENTRY, COMMIT], r"header .*is damaged.*delete it|header .*is damaged.*output.overwrite"),
        ([b"[1, 2]\n", COMMIT, ENTRY, COMMIT], r"header .*is damaged"),
        ([b"\xff\xfe\n", COMMIT], r"header .*is damaged"),
        ([HEADER, COMMIT, b"\x00" * 40 + b"\n", COMMIT], r"NUL bytes.*Delete"),
        ([HEADER, COMMIT, b'{"kind": "pair", "id": \n', COMMIT], r"line 3 is not JSON.*Delete"),
    ],
)
def test_a_damaged_journal_is_a_message_saying_what_to_do(tmp_path, lines, message):
    path = journal_with(tmp_path, lines)
    with pytest.raises(ConfigError, match=message) as err:
        Journal(path, "fp")
    assert path in str(err.value)


def test_a_nul_filled_tail_after_the_last_commit_is_cut_off(tmp_path):
    """What a machine crash can leave: the last, unfinished batch as zeros."""
    path = journal_with(tmp_path, [HEADER, COMMIT, ENTRY, COMMIT, b"\x00" * 4096])
    journal = Journal(path, "fp")
    assert journal.done["a"] == 1 and open(path, "rb").read().endswith(COMMIT)


# -- item 13: a hub id without network fails fast -------------------------------------------------
@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return cache


def test_a_hub_id_without_network_fails_fast_and_clearly(config, scripted, empty_hub_cache, monkeypatch):
    """It used to take 93-166 s of retries and end in an 80-line traceback. (The endpoint is a name
    that never resolves, RFC 2606, so the test means the same with or without network.)"""
    from seva_plugin.pipeline.build import Build

    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    started = time.time()
    with pytest.raises(ConfigError) as err:
        Build({**config, "model": "someorg/not-a-cached-model"})
    assert time.time() - started < 15
    text = str(err.value)
    assert "someorg/not-a-cached-model" in text and "cache" in text and "cannot reach" in text
    assert len(text.splitlines()) <= 4


def test_a_hub_id_in_offline_mode_fails_at_once(config, scripted, empty_hub_cache, monkeypatch):
    from seva_plugin.pipeline.build import Build

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.time()
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        Build({**config, "model": "someorg/not-a-cached-model"})
    assert time.time() - started < 2


def test_a_cached_hub_id_passes_without_network(config, scripted, empty_hub_cache, monkeypatch):
    from seva_plugin.pipeline.model_paths import check_model_path

    snapshot = empty_hub_cache / "models--someorg--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (empty_hub_cache / "models--someorg--cached" / "refs").mkdir()
    (empty_hub_cache / "models--someorg--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_model_path("someorg/cached", "model")


# -- item 15: a failed start never blocks the corrected rerun ------------------------------------
def test_a_build_that_fails_before_any_work_leaves_no_journal_in_the_way(config, scripted):
    """A missing source file is found when the build starts reading; the corrected rerun used to
    be refused: "records a build of this dataset with a different config"."""
    from seva_plugin.pipeline.build import Build

    wrong = {**config, "source": {"file": config["source"]["file"].replace("prompts", "promts")}}
    with pytest.raises(ConfigError, match="source file not found"):
        Build(wrong).run(progress=False)
    result = Build(config).run(progress=False)
    assert result.kept == 4


def test_a_journal_without_finished_work_does_not_block_another_config(tmp_path):
    path = str(tmp_path / "j.jsonl")
    Journal(path, "fp-a", config={"seed": 0}).append([])
    Journal(path, "fp-b", config={"seed": 1})  # nothing finished: nothing to protect
    assert not os.path.exists(path)  # the file comes with the first finished batch
    with open(path, "wb") as fh:  # as the journal used to be made before any work
        fh.write(HEADER + COMMIT)
    Journal(path, "fp-c")


def test_a_config_change_names_the_keys_that_changed(tmp_path):
    path = str(tmp_path / "j.jsonl")
    old = {"model": "m", "augment": {"name": "diffusion_noise", "step": 500}, "backend": {"name": "hf", "batch_size": 8}, "seed": 0}
    Journal(path, "fp-a", config=old).append([{"kind": "reject", "id": "a", "reason": "r", "code": "c"}])
    new = {**old, "augment": {"name": "diffusion_noise", "step": 800}, "seed": 1}
    with pytest.raises(ConfigError, match=r"changed: augment.step \(500 -> 800\), seed \(0 -> 1\)"):
        Journal(path, "fp-b", config=new)
