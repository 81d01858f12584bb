"""A corpus of cog.yaml files, one per key of Cog's schema (and the older keys still found in projects):
each is accepted, acted on where it means something for an OCI image, and warned about once where not."""

from __future__ import annotations

import pytest

from cogbuild.config import BUILD_KEYS, CONCURRENCY_KEYS, TOP_KEYS, Weight, WeightSource, load_config
from cogbuild.errors import UsageError


def load(tmp_path, text: str):
    (tmp_path / "predict.py").write_text("")
    (tmp_path / "train.py").write_text("")
    (tmp_path / "requirements.txt").write_text("numpy==2.2.0\n")
    (tmp_path / "cog.yaml").write_text(text)
    return load_config(tmp_path / "cog.yaml")


# key -> (cog.yaml, what cogbuild makes of it, the warnings it gives)
CORPUS = {
    "build.python_version": ('build:\n  python_version: "3.12"\nrun: predict.py:Runner\n',
                             lambda c: c.python_version == "3.12", []),
    "build.python_requirements": ("build:\n  python_requirements: requirements.txt\nrun: predict.py:Runner\n",
                                  lambda c: c.requirements() == ["numpy==2.2.0"], []),
    "build.python_packages": ('build:\n  python_packages: ["pillow==11.0.0"]\nrun: predict.py:Runner\n',
                              lambda c: c.requirements() == ["pillow==11.0.0"],
                              ['deprecated field "build.python_packages": use "build.python_requirements" instead']),
    "build.system_packages": ("build:\n  system_packages: [ffmpeg]\nrun: predict.py:Runner\n",
                              lambda c: c.system_packages == ["ffmpeg"], []),
    "build.gpu": ("build:\n  gpu: true\nrun: predict.py:Runner\n", lambda c: c.gpu, []),
    "build.cuda": ('build:\n  gpu: true\n  cuda: "12.4"\nrun: predict.py:Runner\n', lambda c: c.cuda == "12.4", []),
    "build.cudnn": ('build:\n  gpu: true\n  cudnn: "9"\nrun: predict.py:Runner\n', lambda c: c.cudnn == "9", []),
    "build.run": ("build:\n  run: []\nrun: predict.py:Runner\n", lambda c: True, []),
    "build.pre_install": ("build:\n  pre_install: []\nrun: predict.py:Runner\n", lambda c: True, []),
    "build.sdk_version": ('build:\n  sdk_version: "0.16.0"\nrun: predict.py:Runner\n', lambda c: True,
                          ["build.sdk_version has no effect with cogbuild"]),
    "build.cog_runtime": ("build:\n  cog_runtime: true\nrun: predict.py:Runner\n", lambda c: True,
                          ["build.cog_runtime has no effect with cogbuild"]),
    "build.fast": ("build:\n  fast: true\nrun: predict.py:Runner\n", lambda c: True,
                   ["build.fast has no effect with cogbuild"]),
    "run": ("run: predict.py:Runner\n", lambda c: c.predictor == "predict.py:Runner" and c.kind == "run", []),
    "predict": ("predict: predict.py:Predictor\n", lambda c: c.predictor == "predict.py:Predictor",
                ['deprecated field "predict": use "run" instead']),
    "train": ("run: predict.py:Runner\ntrain: train.py:train\n",
              lambda c: c.trainer == "train.py:train" and c.runtime_env()["COG_TRAIN"] == "train.py:train", []),
    "model": ("run: predict.py:Runner\nmodel: r8.im/acme/x\n",
              lambda c: c.model_repository == "r8.im/acme/x" and c.default_image_name == "r8.im/acme/x:latest", []),
    "image": ("run: predict.py:Runner\nimage: registry.example/acme/x:v2\n",
              lambda c: c.default_image_name == "registry.example/acme/x:v2", []),
    "environment": ("run: predict.py:Runner\nenvironment:\n  - HF_HOME=/src/.hf\n",
                    lambda c: c.runtime_env()["HF_HOME"] == "/src/.hf", []),
    "concurrency.max": ("run: predict.py:Runner\nconcurrency:\n  max: 4\n",
                        lambda c: c.runtime_env()["COG_MAX_CONCURRENCY"] == "4",
                        ['deprecated field "concurrency.max": use "@cog.concurrent(max=...)" instead']),
    "concurrency.default_target": ("run: predict.py:Runner\nconcurrency:\n  max: 4\n  default_target: 2\n",
                                   lambda c: c.concurrency_max == 4,
                                   ['deprecated field "concurrency.max"',
                                    "concurrency.default_target has no effect with cogbuild"]),
    "entrypoint": ('build:\n  python_version: "3.11"\nentrypoint: ["cogbuild", "--quiet"]\n',
                   lambda c: c.entrypoint == ["cogbuild", "--quiet"] and c.predictor is None, []),
    "weights": ("run: predict.py:Runner\nweights:\n  - name: base\n    target: /weights/base\n"
                "    source:\n      uri: ./w\n      exclude: ['*.tmp']\n",
                lambda c: c.weights == [Weight("base", "/weights/base", (WeightSource("./w", (), ("*.tmp",)),))], []),
}


def test_the_corpus_covers_every_key():
    keys = {k for k in TOP_KEYS if k not in ("build", "concurrency")}
    keys |= {f"build.{k}" for k in BUILD_KEYS} | {f"concurrency.{k}" for k in CONCURRENCY_KEYS}
    assert keys == set(CORPUS)


@pytest.mark.parametrize("key", sorted(CORPUS))
def test_each_key_is_accepted_and_acted_on_or_warned_about_once(tmp_path, key):
    text, acted_on, warnings = CORPUS[key]
    config = load(tmp_path, text)
    assert acted_on(config)
    assert len(config.warnings) == len(warnings), config.warnings
    for expected, got in zip(warnings, config.warnings, strict=False):
        assert got.startswith(expected), got


def test_model_as_the_seed_predictor_and_as_a_repository(tmp_path):
    seed = load(tmp_path, 'model: "predict.py:Model"\n')
    assert (seed.predictor, seed.model_repository, seed.warnings) == ("predict.py:Model", None, [])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.py").write_text("")
    assert load(tmp_path, "model: sub/m.py:M\n").predictor == "sub/m.py:M"
    cog = load(tmp_path, "run: predict.py:Runner\nmodel: 127.0.0.1:5000/acme/x\n")
    assert (cog.predictor, cog.model_repository) == ("predict.py:Runner", "127.0.0.1:5000/acme/x")
    assert cog.default_image_name == "127.0.0.1:5000/acme/x:latest"


def test_a_predictor_in_a_subdirectory(tmp_path):
    (tmp_path / "my-subdir").mkdir()
    (tmp_path / "my-subdir" / "predict.py").write_text("")
    assert load(tmp_path, 'predict: "my-subdir/predict.py:Predictor"\n').predictor == "my-subdir/predict.py:Predictor"


def test_python_older_than_cogs_minimum_builds_with_a_warning(tmp_path):
    config = load(tmp_path, 'build:\n  python_version: "3.9"\nrun: predict.py:Runner\n')
    assert config.python_version == "3.9"
    assert config.warnings == ["Python 3.9 is deprecated: Cog's minimum supported Python version is 3.10; "
                               "cogbuild still builds it"]


@pytest.mark.parametrize("text, message", [
    ("run: predict.py:Runner\nbuidl:\n  gpu: true\n", r"line 2: unknown key 'buidl'; did you mean 'build'\?"),
    ("run: predict.py:Runner\npython_version: '3.12'\n", r"line 2: unknown key 'python_version'; did you mean "
                                                         r"'build.python_version'\?"),
    ("build:\n  system_package: [x]\n", r"line 2: unknown key build.'system_package'; did you mean 'system_packages'"),
    ("concurrency:\n  maximum: 2\n", r"line 2: unknown key concurrency.'maximum'; did you mean 'max'"),
    ("run: predict.py:Runner\nmodel: r8.im/acme/x:v1\n", r"line 2: model 'r8.im/acme/x:v1' must be a bare repository"),
    ("run: predict.py:Runner\nmodel: r8.im/acme/x\nimage: r8.im/acme/y\n", r"'model' and 'image' cannot both be set"),
    ("run: predict.py:Runner\nimage: 'Not A Name'\n", r"line 2: image 'Not A Name' is not an image name"),
    ("model: predict.py\n", r"line 1: model must look like \"predict.py:Predictor\""),
    ("predict: ../outside.py:P\n", r"line 1: predict names ../outside.py, which is outside"),
    ("train: nope.py:train\n", r"line 1: train names nope.py, which does not exist"),
    ("weights:\n  - name: Big\n    target: /w\n    source: {uri: ./w}\n", r"line 2: weights\[0\].name 'Big' must"),
    ("weights:\n  - name: a\n    target: w\n    source: {uri: ./w}\n", r"line 3: weights\[0\].target 'w' must be"),
    ("weights:\n  - name: a\n    target: /w\n", r"line 2: weights\[0\].source is required"),
    ("weights:\n  - {name: a, target: /w, source: {uri: x}}\n  - {name: b, target: /w/b, source: {uri: y}}\n",
     r"line 3: weights\[1\].target '/w/b' overlaps '/w'"),
    ("weights:\n  - {name: a, target: /w, source: {uri: x, include: ['!a']}}\n", r"line 2: weights\[0\].source.include"),
    ("weights:\n  - {name: a, target: /w, source: {url: x}}\n", r"unknown key weights\[0\].source.'url'; did you mean 'uri'"),
])
def test_mistakes_name_the_line_and_suggest(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        load(tmp_path, text)
