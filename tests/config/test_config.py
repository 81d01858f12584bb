"""cog.yaml in both forms; every mistake is one sentence naming the file and line."""

from __future__ import annotations

import pytest

from cogbuild.config import RunStep, SecretMount, load_config
from cogbuild.errors import UsageError


def write(tmp_path, text: str, predictor: bool = True):
    (tmp_path / "cog.yaml").write_text(text)
    if predictor:
        (tmp_path / "predict.py").write_text("")
        (tmp_path / "model.py").write_text("")
    return tmp_path / "cog.yaml"


def test_cog_form(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy==2.2.0\n")
    cfg = load_config(write(tmp_path, """
build:
  python_version: "3.13"
  python_requirements: requirements.txt
  python_packages: ["pillow==11.0.0"]
  system_packages: [ffmpeg]
  gpu: true
  cuda: "12.4"
predict: "predict.py:Predictor"
concurrency:
  max: 4
environment:
  - HF_HOME=/src/.hf
image: r8.im/me/model
"""))
    assert cfg.python_version == "3.13" and cfg.gpu and cfg.cuda == "12.4"
    assert cfg.requirements() == ["pillow==11.0.0", "numpy==2.2.0"]
    assert cfg.system_packages == ["ffmpeg"] and cfg.concurrency_max == 4
    assert cfg.environment == {"HF_HOME": "/src/.hf"} and cfg.image == "r8.im/me/model"
    assert cfg.predictor == "predict.py:Predictor" and cfg.kind == "predict"


def test_seed_form(tmp_path):
    cfg = load_config(write(tmp_path, """
model: "model.py:Model"
environment:
  python_version: "3.11"
  system_packages: [libgl1]
"""))
    assert cfg.predictor == "model.py:Model" and cfg.system_packages == ["libgl1"]


def test_runner_form(tmp_path):
    cfg = load_config(write(tmp_path, 'run: "predict.py:Runner"\n'))
    assert cfg.kind == "run"


def test_build_run_in_both_of_cogs_forms(tmp_path):
    cfg = load_config(write(tmp_path, "build:\n  run:\n    - echo one > /a\n    - command: cat /run/secrets/t\n"
                                      "      mounts:\n        - {type: secret, id: t, target: /run/secrets/t}\n"))
    assert cfg.run == [RunStep("echo one > /a"),
                       RunStep("cat /run/secrets/t", (SecretMount("t", "/run/secrets/t"),))]


@pytest.mark.parametrize("text, message", [
    ("build:\n  python_version: \"3.11\"\n  gpus: true\n", r"cog.yaml line 3: unknown key build.'gpus'"),
    ("predict: \"predict.py:Predictor\"\nbogus: 1\n", r"cog.yaml line 2: unknown key 'bogus'"),
    ("build:\n  python_version: 3\n", r"line 2: python_version '3' is not a Python 3 version"),
    ("build:\n  gpu: maybe\n", r"line 2: gpu must be true or false"),
    ("predict: predict.py\n", r"line 1: predict must look like"),
    ("predict: \"missing.py:P\"\n", r"line 1: predict names missing.py, which does not exist"),
    ("build:\n  run: echo hi\n", r"line 2: build.run must be a list"),
    ("build:\n  run:\n    - mounts: []\n", r"line 3: a build.run entry written as a mapping needs a `command`"),
    ("build:\n  run:\n    - command: x\n      mount: []\n", r"line 4: unknown key build.run entry.'mount'"),
    ("build:\n  run:\n    - command: x\n      mounts:\n        - type: cache\n          id: a\n"
     "          target: /a\n", r"line 5: build.run mount type 'cache' is not supported"),
    ("build:\n  run:\n    - command: x\n      mounts:\n        - type: secret\n          id: a\n",
     r"line 5: a build.run mount needs `target`"),
    ("build:\n  run:\n    - command: x\n      mounts:\n        - {type: secret, id: a, target: rel}\n",
     r"line 5: mount target 'rel' must be an absolute path"),
    ("build:\n  pre_install:\n    - x\n", r"line 3: build.pre_install is not supported: put its commands in"),
    ("concurrency:\n  max: 0\n", r"line 2: concurrency.max must be a whole number"),
    ("environment:\n  - NOVALUE\n", r"line 2: environment entry 'NOVALUE' must look like NAME=value"),
    ("build: [\n", r"cog.yaml line \d+: invalid YAML"),
    ("build:\n  python_requirements: nope.txt\n", r"line 2: python_requirements file nope.txt does not exist"),
    ("predict: \"predict.py:P\"\npredict: \"predict.py:Q\"\n", r"line 2: key 'predict' appears twice"),
    ("entrypoint: []\n", r"line 1: entrypoint must name a program"),
    ("entrypoint: {a: b}\n", r"line 1: entrypoint must be a list"),
    ("entrypoint: [cogbuild]\nrun: \"predict.py:P\"\n",
     r"line 2: 'run' cannot be used with 'entrypoint': an entrypoint makes an app image, which has no predictor"),
    ("model: \"model.py:M\"\nentrypoint: [cogbuild]\n", r"line 1: 'model' cannot be used with 'entrypoint'"),
    ("entrypoint: [cogbuild]\nconcurrency:\n  max: 2\n", r"line 3: 'concurrency' cannot be used with"),
])
def test_mistakes_name_the_line(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_suggests_init(tmp_path):
    with pytest.raises(UsageError, match="cogbuild init"):
        load_config(tmp_path / "cog.yaml")


def test_inputs_digest_follows_requirements(tmp_path):
    (tmp_path / "requirements.txt").write_text("a==1\n")
    path = write(tmp_path, "build:\n  python_requirements: requirements.txt\n")
    before = load_config(path).inputs_digest()
    (tmp_path / "requirements.txt").write_text("a==2\n")
    assert load_config(path).inputs_digest() != before


def test_an_entrypoint_makes_an_app_image_and_a_model_repository_still_names_it(tmp_path):
    cfg = load_config(write(tmp_path, "entrypoint: cogbuild\nmodel: ghcr.io/acme/cogbuild\n", predictor=False))
    assert (cfg.entrypoint, cfg.predictor, cfg.default_image_name) == (["cogbuild"], None,
                                                                      "ghcr.io/acme/cogbuild:latest")
