"""`cogbuild predict DIR`, `init` and the CLI's manners, as a user runs them: offline, no image, no container."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli_helpers import MODELS, cogbuild, copy_model, isolated_env, one_line_error
from fixtures_models import write_subdirectory_model
from cogbuild.cli import COMMAND_NAMES, cli
from cogbuild.container import free_port, wait_ready


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


@pytest.fixture
def filecopy(tmp_path):
    return copy_model("filecopy", tmp_path / "filecopy")


def test_file_in_file_out_on_a_directory(tmp_path, env, filecopy):
    (tmp_path / "note.txt").write_text("abc")
    run = cogbuild(["predict", str(filecopy), "-i", "image=@note.txt", "-i", "upper=true", "-o", "res.txt"],
                   tmp_path, env)
    assert run.code == 0, run.err
    assert run.out == "" and "Written output to: res.txt\n" in run.err
    assert (tmp_path / "res.txt").read_bytes() == b"copied:ABC"


def test_short_form_and_default_output_name(tmp_path, env, filecopy):
    (tmp_path / "pic.png").write_bytes(b"\x89PNG...")
    run = cogbuild(["predict", str(filecopy), "-i", "@pic.png"], tmp_path, env)
    assert run.code == 0, run.err
    assert "Written output to: output.png\n" in run.err
    assert (tmp_path / "output.png").read_bytes() == b"copied:\x89PNG..."


def test_the_current_directory_is_the_default_model(env, filecopy):
    (filecopy / "in.txt").write_text("here")
    run = cogbuild(["predict", "-i", "image=@in.txt", "-o", "out.txt"], filecopy, env)
    assert run.code == 0, run.err
    assert (filecopy / "out.txt").read_text() == "copied:here"


def test_json_prints_the_whole_prediction(tmp_path, env, filecopy):
    (tmp_path / "in.txt").write_text("j")
    run = cogbuild(["predict", str(filecopy), "-i", "image=@in.txt", "--json"], tmp_path, env)
    assert run.code == 0, run.err
    body = json.loads(run.out)
    assert '"status": "succeeded"' in run.out, "Cog's layout, which scripts grep for"
    assert body["output"] == "output.txt" and (tmp_path / "output.txt").read_text() == "copied:j"
    assert {"id", "input", "logs", "metrics", "created_at", "completed_at"} <= set(body)


def test_iterator_chunks_print_as_cog_prints_them_and_lists_repeat(tmp_path, env):
    model = copy_model("choices", tmp_path / "choices")
    run = cogbuild(["predict", str(model), "-i", "mode=slow", "-i", "words=a", "-i", "words=b"], tmp_path, env)
    assert run.code == 0, run.err
    assert run.out == '[\n  "slow 10 1.0",\n  " a",\n  " b"\n]\n'


def test_json_inputs_inline_from_a_file_and_stdin(tmp_path, env):
    model = copy_model("hello", tmp_path / "hello")
    (tmp_path / "in.json").write_text('{"text": "file"}')
    for args, stdin in ((["--json", '{"text": "inline"}'], None), (["--json", "@in.json"], None),
                        (["--json", "@-"], '{"text": "dash at"}'), (["--json", "-"], '{"text": "dash"}')):
        done = subprocess.run([sys.executable, "-m", "cogbuild", "predict", str(model), *args], cwd=tmp_path,
                              env=env, input=stdin, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert body["status"] == "succeeded" and body["output"].startswith("hello "), body
    run = cogbuild(["predict", str(model), "--json", '{"text": "x"}', "-o", "out.json"], tmp_path, env)
    assert run.code == 0 and "Written output to: out.json" in run.err
    assert json.loads((tmp_path / "out.json").read_text())["output"] == "hello x"


def test_no_output_and_text_written_with_o(tmp_path, env):
    model = copy_model("hello", tmp_path / "none")
    (model / "predict.py").write_text(
        "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self, text: str) -> str:\n        return None if text == 'none' else 'hi ' + text\n")
    run = cogbuild(["predict", str(model), "-i", "text=none"], tmp_path, env)
    assert (run.code, run.out) == (0, "") and "No output generated" in run.err
    run = cogbuild(["predict", str(model), "-i", "text=x", "-o", "out.txt"], tmp_path, env)
    assert (tmp_path / "out.txt").read_text() == "hi x\n" and "Written output to: out.txt" in run.err


def test_quiet_prints_only_the_result(tmp_path, env):
    model = copy_model("hello", tmp_path / "hello")
    loud = cogbuild(["predict", str(model), "-i", "text=q"], tmp_path, env)
    quiet = cogbuild(["--quiet", "predict", str(model), "-i", "text=q"], tmp_path, env)
    assert loud.out == quiet.out == "hello q\n"
    assert "starting the model" in loud.err
    assert quiet.err == ""
    assert "\x1b[" not in loud.err, "a log that is not a terminal gets no escape codes"


def test_logs_show_while_the_model_runs(tmp_path, env):
    model = copy_model("waiting", tmp_path / "waiting")
    release = tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-m", "cogbuild", "predict", str(model), "-i", f"release={release}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # the model blocks until `release` exists, so this log came live
            seen.append(line)
            if "waiting for the release file" in line:
                break
        assert proc.poll() is None, "".join(seen)
        release.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, out) == (0, "released\n"), err
    assert "waiting for the release file" not in err, "logs shown live are not printed again"


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is inside `directory` (a model's server and worker run there)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(directory):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGTERM"])
def test_ctrl_c_during_a_prediction_stops_the_model_server(tmp_path, env, stop_signal):
    model = copy_model("waiting", tmp_path / "waiting")
    never = tmp_path / "never"
    proc = subprocess.Popen([sys.executable, "-m", "cogbuild", "predict", str(model), "-i", f"release={never}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "waiting for the release file" in line:
                break
        assert processes_in(model), "the model's server runs in its directory"
        proc.send_signal(getattr(signal, stop_signal))
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert processes_in(model) == [], "the model's server and worker must be gone"


def test_iterator_text_streams_to_stdout_as_it_comes(tmp_path, env):
    model = copy_model("tokens", tmp_path / "tokens")
    release = tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-m", "cogbuild", "predict", str(model), "-i", f"release={release}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.read(11)  # the model holds its second token until `release` exists
        assert first == b'[\n  "first"' and proc.poll() is None
        release.touch()
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert first + rest == b'[\n  "first",\n  " second"\n]\n'


# -- every error is one sentence with the right exit code ------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["-i", "imag=@in.txt"], 'unknown input "imag"; valid inputs are: image, upper'),
    (["--json", '{"wrong": 1}'], 'unknown input "wrong"; valid inputs are: image, upper'),
    (["-i", "image=@in.txt", "-i", "upper=perhaps"], "invalid input \"upper\": expected boolean, got string 'perhaps'"),
    (["-i", "image=@missing.txt"], "input 'image' names missing.txt, which is not a file"),
    (["-i", "upper=true"], 'missing required input "image"'),
    (["--json", '{"upper": true}', "-i", "image=@in.txt"], "Must use one of --json or --input to provide model inputs"),
    (["-i", "image"], "input 'image' must look like name=value or name=@file"),
])
def test_bad_inputs_fail_before_the_model_starts(tmp_path, env, flags, message):
    # badsetup's setup() raises: an input error instead of a setup error proves nothing started.
    model = copy_model("badsetup", tmp_path / "model")
    (model / "predict.py").write_text((MODELS / "filecopy" / "predict.py").read_text().replace(
        "self.prefix = b\"copied:\"", "raise RuntimeError('setup ran')"))
    (tmp_path / "in.txt").write_text("x")
    run = cogbuild(["predict", str(model), *flags], tmp_path, env)
    assert run.code == 2, run.err
    assert one_line_error(run) == message
    assert "starting the model" not in run.err


def test_a_failing_prediction_exits_1_with_its_error_and_logs(tmp_path, env):
    model = copy_model("failing", tmp_path / "failing")
    run = cogbuild(["predict", str(model), "-i", "text=this"], tmp_path, env)
    assert run.code == 1
    assert one_line_error(run, model_logs=True) == "the prediction failed: cannot handle this"
    assert "about to fail" in run.err  # the model's logs are shown
    as_json = cogbuild(["predict", str(model), "-i", "text=this", "--json"], tmp_path, env)
    assert as_json.code == 1
    assert json.loads(as_json.out)["status"] == "failed"
    assert "cannot handle this" in json.loads(as_json.out)["error"]


def test_a_failing_setup_is_reported_with_its_reason(tmp_path, env):
    model = copy_model("badsetup", tmp_path / "badsetup")
    run = cogbuild(["predict", str(model)], tmp_path, env)
    assert run.code == 1
    assert one_line_error(run, model_logs=True) == "the model's setup failed: RuntimeError: weights are missing"
    assert 'raise RuntimeError("weights are missing")' in run.err  # its output, for the one who debugs it


def test_a_setup_slower_than_the_timeout_is_one_sentence(tmp_path, env):
    model = copy_model("slowsetup", tmp_path / "slow")
    run = cogbuild(["predict", str(model), "--timeout", "2"], tmp_path, env)
    assert run.code == 1
    assert one_line_error(run, model_logs=True).startswith("the model did not become ready within 2 s")


def test_a_predictor_that_does_not_load_names_its_file(tmp_path, env):
    model = copy_model("broken", tmp_path / "broken")
    run = cogbuild(["predict", str(model)], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run).startswith(f"{model / 'predict.py'} cannot be loaded:")


def test_a_missing_package_on_this_host_says_what_to_do(tmp_path, env):
    model = copy_model("hello", tmp_path / "needs")
    (model / "predict.py").write_text("import torch_that_is_not_here\n" + (model / "predict.py").read_text())
    run = cogbuild(["predict", str(model)], tmp_path, env)
    assert run.code == 2
    error = one_line_error(run)
    assert "torch_that_is_not_here" in error and "build the image and predict with it" in error


def test_a_directory_without_cog_yaml(tmp_path, env):
    (tmp_path / "empty").mkdir()
    run = cogbuild(["predict", "empty"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run).startswith(f"{tmp_path / 'empty'} has no cog.yaml")


def test_a_path_that_does_not_exist(tmp_path, env):
    run = cogbuild(["predict", "./nowhere"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run) == "there is no directory ./nowhere"


def test_a_bad_cog_yaml_names_the_key_and_line(tmp_path, env, filecopy):
    (filecopy / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  pyhton_packages: []\n'
                                       'predict: "predict.py:Predictor"\n')
    run = cogbuild(["predict", str(filecopy)], tmp_path, env)
    assert run.code == 2
    error = one_line_error(run)
    assert "line 3" in error and "pyhton_packages" in error


def test_an_image_name_not_in_the_store(tmp_path, env):
    run = cogbuild(["predict", "nosuch:latest", "-i", "text=x"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run).startswith("no image named 'nosuch:latest' in the local store")


def test_run_on_a_model_directory_points_to_serve(tmp_path, env):
    copy_model("hello", tmp_path / "hello")
    run = cogbuild(["run", "hello"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run).startswith("hello is a model directory, not an image: serve it with `cogbuild serve")


def test_run_env_flags_must_be_name_value(tmp_path, env):
    run = cogbuild(["run", "some:image", "-e", "NOVALUE"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run) == "-e 'NOVALUE' must look like NAME=value"


def test_debug_shows_the_traceback(tmp_path, env):
    run = cogbuild(["--debug", "predict", "./nowhere"], tmp_path, env)
    assert run.code != 0
    assert "Traceback" in run.err and "there is no directory ./nowhere" in run.err


# -- init ------------------------------------------------------------------------------------------
def test_init_writes_a_template_that_predicts_as_is(tmp_path, env):
    run = cogbuild(["init", "fresh"], tmp_path, env)
    assert run.code == 0, run.err
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == [".cogignore", "cog.yaml", "predict.py"]
    default = cogbuild(["predict", "fresh"], tmp_path, env)
    assert (default.code, default.out) == (0, "hello world\n"), default.err
    given = cogbuild(["predict", "fresh", "-i", "text=you", "-i", "repeat=2"], tmp_path, env)
    assert given.out == "hello you hello you\n", given.err


def test_init_cogignore_leaves_out_prediction_outputs_but_not_code(tmp_path):
    from cogbuild.commands.init import write_template
    from cogbuild.layers.code import collect_model_files

    write_template(tmp_path)
    for name in ("output.png", "output.0.txt", "output_utils.py"):
        (tmp_path / name).write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "predict.cpython-311.pyc").write_bytes(b"\0")
    shipped = {e.path.removeprefix("src/") for e in collect_model_files(tmp_path).code.entries()}
    assert {"cog.yaml", "predict.py", "output_utils.py"} <= shipped
    assert not {"output.png", "output.0.txt"} & shipped
    assert not [p for p in shipped if "__pycache__" in p]


def test_init_never_overwrites(tmp_path, env):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "predict.py").write_text("# my work\n")
    run = cogbuild(["init", "mine"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run).startswith("mine/predict.py already exists; nothing was written")
    assert (tmp_path / "mine" / "predict.py").read_text() == "# my work\n"
    assert not (tmp_path / "mine" / "cog.yaml").exists()


# -- help ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_every_command_has_help_with_examples(name):
    command = cli.get_command(click.Context(cli), name)
    with click.Context(command, info_name=name) as ctx:
        text = command.get_help(ctx)
    assert "Example" in text, f"`cogbuild {name} --help` shows no example"


def test_top_level_help_documents_exit_codes():
    with click.Context(cli, info_name="cogbuild") as ctx:
        text = cli.get_help(ctx)
    assert "Exit codes:" in text and "130" in text


def test_train_without_a_train_entry_is_one_sentence(tmp_path, env):
    model = copy_model("hello", tmp_path / "hello")
    run = cogbuild(["train", str(model), "-i", "epochs=1"], tmp_path, env)
    assert run.code == 2
    assert one_line_error(run) == f"{model / 'cog.yaml'} has no `train:` entry; add one like train: \"train.py:train\""


def test_a_model_in_a_subdirectory_predicts_and_cog_yaml_warnings_show_once(tmp_path, env):
    model = write_subdirectory_model(tmp_path / "sub", "  fast: true\n")
    run = cogbuild(["predict", str(model), "-i", "s=world"], tmp_path, env)
    assert (run.code, run.out) == (0, "hello world\n"), run.err
    assert run.err.count("warning: cog.yaml: build.fast has no effect with cogbuild") == 1
    assert run.err.count('warning: cog.yaml: deprecated field "predict": use "run" instead') == 1


def test_push_without_ref_needs_image_or_model_in_cog_yaml(tmp_path, env):
    model = copy_model("hello", tmp_path / "hello")
    run = cogbuild(["push"], model, env)
    assert run.code == 2
    assert one_line_error(run) == "name where to push: `cogbuild push REF`, or `image:` / `model:` in cog.yaml"


def test_predicting_a_directory_says_where_its_weights_are(tmp_path, env):
    model = copy_model("hello", tmp_path / "hello")
    (model / "w").mkdir()
    (model / "w" / "a.bin").write_bytes(b"w")
    with (model / "cog.yaml").open("a") as yaml_file:
        yaml_file.write("weights:\n  - name: base\n    target: /weights/base\n    source:\n      uri: ./w\n")
    run = cogbuild(["predict", str(model), "-i", "text=w"], tmp_path, env)
    assert (run.code, run.out) == (0, "hello w\n"), run.err
    assert run.err.count("warning: weights 'base' are at /weights/base in the image only") == 1


def test_serve_upload_url_puts_output_files_there(tmp_path, env):
    import httpx

    from http_server import LoopbackHTTPServer, Reply

    uploads = LoopbackHTTPServer(script=[Reply(201)])
    model = copy_model("filecopy", tmp_path / "filecopy")
    port = free_port()
    upload_base = f"{uploads.url}/bucket/"
    server = subprocess.Popen([sys.executable, "-m", "cogbuild", "serve", str(model), "--port", str(port),
                               "--upload-url", upload_base], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", lambda: "", 120, lambda s: None, alive=lambda: server.poll() is None)
        body = httpx.post(f"http://127.0.0.1:{port}/predictions", timeout=60,
                          json={"input": {"image": "data:text/plain;base64,dXA="}}).json()
    finally:
        server.terminate()
        server.wait(30)
        uploads.close()
    assert body["status"] == "succeeded", body
    assert body["output"] == upload_base + "out.txt"
    assert [(r.method, r.path, r.body) for r in uploads.requests] == [("PUT", "/bucket/out.txt", b"copied:up")]


def test_train_on_a_directory_checks_inputs_and_writes_the_output(tmp_path, env):
    model = copy_model("hello", tmp_path / "trainable")
    (model / "train.py").write_text(
        "from cog import BaseModel, Input, Path\n\n\nclass TrainingOutput(BaseModel):\n    weights: Path\n\n\n"
        "def train(n: int = Input(ge=1)) -> TrainingOutput:\n    print(f'training with n={n}')\n"
        "    open('/tmp/cogbuild-train-test.bin', 'w').write('a' * n)\n"
        "    return TrainingOutput(weights=Path('/tmp/cogbuild-train-test.bin'))\n")
    with (model / "cog.yaml").open("a") as config:
        config.write('train: "train.py:train"\n')
    refused = cogbuild(["train", str(model), "-i", "n=0"], tmp_path, env)
    assert refused.code == 2 and "n" in one_line_error(refused)
    run = cogbuild(["train", str(model), "-i", "n=3", "-o", "trained"], tmp_path, env)
    assert run.code == 0, run.err
    assert "training with n=3" in run.err + run.out
    assert json.loads((tmp_path / "trained").read_text()) == {"weights": "trained.weights.bin"}
    assert (tmp_path / "trained.weights.bin").read_text() == "aaa"
