"""-i flags against real schemas (made by the runtime from the test models), and outputs to files."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from cogbuild.config import load_config
from cogbuild.errors import UsageError
from cogbuild.imageinfo import summarize_schema
from cogbuild.predict_io import (Rendered, check_files, input_specs, parse_inputs, parse_json_inputs,
                                 write_output, write_prediction)
from cogbuild.serving import directory_schema

MODELS = Path(__file__).parent / "models"


@pytest.fixture(scope="module")
def choices_schema() -> dict:
    return directory_schema(load_config(MODELS / "choices" / "cog.yaml"))


@pytest.fixture(scope="module")
def file_schema() -> dict:
    return directory_schema(load_config(MODELS / "filecopy" / "cog.yaml"))


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def usage_error(flags: list[str], schema: dict | None) -> str:
    with pytest.raises(UsageError) as caught:
        parse_inputs(flags, schema)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- inputs ----------------------------------------------------------------------------------------
def test_values_are_coerced_to_the_schema_types(choices_schema):
    got = parse_inputs(["mode=slow", "steps=7", "scale=2.5", "words=a", "words=b"], choices_schema)
    assert got == {"mode": "slow", "steps": 7, "scale": 2.5, "words": ["a", "b"]}


def test_a_list_input_given_once_is_still_a_list(choices_schema):
    assert parse_inputs(["words=only"], choices_schema) == {"words": ["only"]}


def test_booleans_accept_the_usual_spellings(file_schema, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    for text, value in (("true", True), ("YES", True), ("0", False), ("off", False)):
        got = parse_inputs([f"image=@{tmp_path / 'a.txt'}", f"upper={text}"], file_schema)
        assert got["upper"] is value
    assert "invalid input \"upper\": expected boolean, got string 'maybe'" in usage_error([f"image=@{tmp_path / 'a.txt'}", "upper=maybe"],
                                                           file_schema)


def test_enums_from_allof_references_are_checked(choices_schema):
    specs = input_specs(choices_schema)
    assert specs["mode"].item["enum"] == ["fast", "slow"]
    assert usage_error(["mode=medium"], choices_schema) == 'invalid input "mode": must be one of: fast, slow'


def test_wrong_type_names_the_input_and_the_value(choices_schema):
    assert usage_error(["steps=many"], choices_schema) == "invalid input \"steps\": expected integer, got string 'many'"
    assert usage_error(["scale=big"], choices_schema) == "invalid input \"scale\": expected number, got string 'big'"


def test_bounds_are_checked(choices_schema):
    assert usage_error(["steps=0"], choices_schema) == 'invalid input "steps": number must be at least 1, not 0'
    assert usage_error(["steps=51"], choices_schema) == 'invalid input "steps": number must be at most 50, not 51'


def test_unknown_input_lists_the_real_ones(choices_schema):
    assert usage_error(["stepz=3"], choices_schema) == \
        'unknown input "stepz"; valid inputs are: mode, notes, scale, steps, words'


def test_a_repeated_scalar_is_refused(choices_schema):
    assert "takes one value" in usage_error(["steps=1", "steps=2"], choices_schema)


def test_missing_required_input_says_how_to_give_it(file_schema):
    assert usage_error([], file_schema) == 'missing required input "image"'


def test_flag_without_equals_is_refused(choices_schema):
    assert usage_error(["steps"], choices_schema) == "input 'steps' must look like name=value or name=@file"


def test_file_inputs_become_data_uris(file_schema, tmp_path):
    photo = tmp_path / "in.png"
    photo.write_bytes(b"\x89PNG fake")
    got = parse_inputs([f"image=@{photo}"], file_schema)
    assert got == {"image": data_uri(b"\x89PNG fake", "image/png")}


def test_short_form_fills_the_one_file_input(file_schema, tmp_path):
    (tmp_path / "in.txt").write_text("hi")
    assert parse_inputs([f"@{tmp_path / 'in.txt'}"], file_schema) == {"image": data_uri(b"hi", "text/plain")}


def test_short_form_needs_exactly_one_file_input(tmp_path):
    hello = directory_schema(load_config(MODELS.parents[2] / "examples" / "hello" / "cog.yaml"))
    (tmp_path / "in.txt").write_text("hi")
    assert usage_error([f"@{tmp_path / 'in.txt'}"], hello) == \
        f"-i @{tmp_path / 'in.txt'} needs a name (name=@file): the model has 0 file inputs"


def test_short_form_fills_a_list_of_files(choices_schema, tmp_path):
    (tmp_path / "in.txt").write_text("hi")
    assert parse_inputs([f"@{tmp_path / 'in.txt'}"], choices_schema) == {"notes": [data_uri(b"hi", "text/plain")]}


def test_list_of_files(choices_schema, tmp_path):
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "b.txt").write_text("B")
    got = parse_inputs([f"notes=@{tmp_path / 'a.txt'}", f"notes=@{tmp_path / 'b.txt'}"], choices_schema)
    assert got == {"notes": [data_uri(b"A", "text/plain"), data_uri(b"B", "text/plain")]}


def test_missing_file_names_input_and_path(file_schema, tmp_path):
    missing = tmp_path / "nope.png"
    assert usage_error([f"image=@{missing}"], file_schema) == f"input 'image' names {missing}, which is not a file"
    with pytest.raises(UsageError, match="which is not a file"):
        check_files([f"image=@{missing}"])


def test_file_input_takes_urls_and_plain_existing_paths(file_schema, tmp_path):
    assert parse_inputs(["image=https://example.org/x.png"], file_schema) == {"image": "https://example.org/x.png"}
    (tmp_path / "p.txt").write_text("p")
    assert parse_inputs([f"image={tmp_path / 'p.txt'}"], file_schema) == {"image": data_uri(b"p", "text/plain")}
    assert "is a file: give image=@PATH or a URL" in usage_error(["image=nothing-here.png"], file_schema)


def test_at_file_for_a_text_input_reads_the_text(choices_schema, tmp_path):
    (tmp_path / "mode.txt").write_text("slow")
    assert parse_inputs([f"mode=@{tmp_path / 'mode.txt'}"], choices_schema) == {"mode": "slow"}


def test_without_a_schema_values_stay_strings_and_repeats_make_lists(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"\0")
    got = parse_inputs(["a=1", "b=x", "b=y", f"c=@{tmp_path / 'f.bin'}"], None)
    assert got == {"a": "1", "b": ["x", "y"], "c": data_uri(b"\0", "application/octet-stream")}


# -- --json inputs --------------------------------------------------------------------------------
def json_error(text: str, schema: dict, stdin=None) -> str:
    with pytest.raises(UsageError) as caught:
        parse_json_inputs(text, schema, stdin)
    return str(caught.value)


def test_json_inline_from_a_file_and_from_stdin(choices_schema, tmp_path):
    assert parse_json_inputs('{"steps": 3, "words": ["a"]}', choices_schema) == {"steps": 3, "words": ["a"]}
    (tmp_path / "in.json").write_text('{"mode": "slow"}')
    assert parse_json_inputs(f"@{tmp_path / 'in.json'}", choices_schema) == {"mode": "slow"}
    for spelling in ("@-", "-"):
        assert parse_json_inputs(spelling, choices_schema, io.StringIO('{"scale": 2}')) == {"scale": 2}


def test_json_string_values_starting_with_at_are_files(file_schema, tmp_path):
    (tmp_path / "in.txt").write_text("hi")
    got = parse_json_inputs(json.dumps({"image": f"@{tmp_path / 'in.txt'}"}), file_schema)
    assert got == {"image": data_uri(b"hi", "text/plain")}


@pytest.mark.parametrize("text, message", [
    ('{"nope": 1}', 'unknown input "nope"; valid inputs are: mode, notes, scale, steps, words'),
    ('{"steps": "lots"}', 'invalid input "steps": expected integer, got string'),
    ('{"steps": true}', 'invalid input "steps": expected integer, got boolean'),
    ('{"steps": 0}', 'invalid input "steps": number must be at least 1, not 0'),
    ('{"mode": "huge"}', 'invalid input "mode": must be one of: fast, slow'),
    ('{"steps": null}', 'invalid input "steps": must not be null (omit the input to use its default)'),
    ('[1]', "--json must be a JSON object of inputs"),
    ('{"steps": ', "Failed to parse JSON: Expecting value"),
])
def test_json_inputs_are_checked_in_cogs_words(choices_schema, text, message):
    assert json_error(text, choices_schema).startswith(message)


def test_json_missing_required_input(file_schema):
    assert json_error("{}", file_schema) == 'missing required input "image"'


# -- outputs ---------------------------------------------------------------------------------------
def test_strings_print_and_objects_become_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_output("hello", None) == Rendered("hello")
    assert write_output({"a": [1, 2]}, None).text == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert write_output(3, None).text == "3"
    assert list(tmp_path.iterdir()) == []


def test_a_file_output_goes_to_output_ext(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_output(data_uri(b"img", "image/png"), None) == Rendered(None, ["output.png"])
    assert (tmp_path / "output.png").read_bytes() == b"img"


def test_a_file_output_goes_to_the_path_given(tmp_path):
    target = tmp_path / "sub" / "result.jpg"
    assert write_output(data_uri(b"jpg", "image/jpeg"), str(target)) == Rendered(None, [str(target)])
    assert target.read_bytes() == b"jpg"


def test_a_list_of_files_is_numbered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [data_uri(b"0", "text/plain"), data_uri(b"1", "text/plain")]
    assert write_output(files, None).written == ["output.0.txt", "output.1.txt"]
    assert write_output(files, "out.md") == Rendered(None, ["out.0.md", "out.1.md"])
    assert (tmp_path / "out.1.md").read_bytes() == b"1"


def test_iterator_chunks_print_as_a_json_array_as_cog_prints_them(choices_schema):
    assert write_output(["fast", " 1"], None, choices_schema).text == '[\n  "fast",\n  " 1"\n]'


def test_text_output_with_o_is_written_to_the_file(tmp_path):
    target = tmp_path / "greeting.txt"
    assert write_output("hi", str(target)) == Rendered(None, [str(target)])
    assert target.read_text() == "hi\n"


def test_files_inside_an_object_are_written_and_named_by_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = {"mask": data_uri(b"m", "image/png"), "score": 0.5, "frames": [data_uri(b"f", "image/jpeg")]}
    rendered = write_output(output, None)
    assert json.loads(rendered.text) == {"mask": "output.mask.png", "score": 0.5, "frames": ["output.frames.0.jpg"]}
    assert rendered.written == ["output.mask.png", "output.frames.0.jpg"]
    assert (tmp_path / "output.mask.png").read_bytes() == b"m"
    assert (tmp_path / "output.frames.0.jpg").read_bytes() == b"f"


def test_an_object_key_cannot_place_a_file_outside_the_output_folder(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    output = {"/../../escaped": data_uri(b"x", "text/plain"), "..": data_uri(b"y", "text/plain")}
    rendered = write_output(output, None)
    assert all(Path(p).parent == Path(".") for p in rendered.written)
    assert sorted(p.name for p in work.iterdir()) == sorted(rendered.written)
    assert not list(tmp_path.glob("escaped*")) and not list((tmp_path / "a").glob("escaped*"))


def test_json_response_with_files_written_beside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = {"status": "succeeded", "output": data_uri(b"x", "image/png")}
    shown = write_prediction(body, None)
    assert json.loads(shown.text) == {"status": "succeeded", "output": "output.png"}
    assert shown.written == ["output.png"]
    written = write_prediction(body, "result.json")
    assert written == Rendered(None, ["result.png", "result.json"])
    assert json.loads((tmp_path / "result.json").read_text())["output"] == "result.png"


def test_dash_sends_a_file_output_to_stdout(capsysbinary, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_output(data_uri(b"\x89PNG raw", "image/png"), "-") == Rendered()
    assert capsysbinary.readouterr().out == b"\x89PNG raw"
    assert write_output("text", "-") == Rendered("text")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="-o - takes one file, but the output holds 2"):
        write_output([data_uri(b"a", "text/plain"), data_uri(b"b", "text/plain")], "-")


def test_data_uris_without_base64_are_percent_decoded(tmp_path):
    target = tmp_path / "o.txt"
    write_output("data:text/plain,hello%20there", str(target))
    assert target.read_bytes() == b"hello there"


def test_the_seeds_at_spelling_of_the_output_path(tmp_path):
    target = tmp_path / "output.png"
    assert write_output(data_uri(b"png", "image/png"), f"@{target}") == Rendered(None, [str(target)])
    assert target.read_bytes() == b"png"


def test_show_summarizes_the_schema_as_flags_read_it(choices_schema):
    """`cogbuild show` and `-i` read one schema the same way: the enum behind `allOf`, lists, files, x-order."""
    summary = summarize_schema(json.dumps(choices_schema))
    assert summary is not None
    assert [(i["name"], i["type"], i["default"]) for i in summary["inputs"]] == [
        ("mode", "enum['fast', 'slow']", "fast"), ("steps", "integer", 10), ("scale", "number", 1.0),
        ("words", "list[string]", []), ("notes", "list[Path]", [])]
    assert summary["inputs"][0]["description"] == ""  # the input's own words, not its enum type's
    assert summary["output"] == "list[string]"
    assert summarize_schema('{"openapi": "3.0.2"}') == {"error": "the image's schema is not a Cog OpenAPI document"}
