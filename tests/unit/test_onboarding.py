"""Onboarding (`tuneops init-dataset`): the proposal for each shape of sample, and a project that runs as it is."""

import csv
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tuneops.config import load_dataset_config, load_project, load_recipe, load_safety_suite, load_template
from tuneops.core.store import ArtifactStore
from tuneops.data.onboarding import (
    OnboardingError,
    canonical_rows,
    init_dataset,
    profile_sample,
    propose_columns,
    read_sample,
)
from tuneops.data.validation import validate_batch

TOPICS = ["budget", "harbour", "election", "vaccine", "striker", "satellite", "drought", "museum"]
PLACES = ["Lisbon", "Osaka", "Nairobi", "Quito", "Oslo", "Perth", "Lagos", "Hanoi", "Tunis", "Riga"]


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def completions(n=40):
    """(a) prompt/completion pairs whose completions end in <|endoftext|>, no id column."""
    return [
        {
            "prompt": f"Write a one-line note about the {TOPICS[i % 8]} in {PLACES[i % 10]} (item {i}).",
            "completion": f" The {TOPICS[i % 8]} in {PLACES[i % 10]} is on the agenda for week {i % 52}.<|endoftext|>",
        }
        for i in range(n)
    ]


def nested_instances(n=20):
    """(b) an instruction with a nested list of instances, most with an empty input."""
    return [
        {
            "id": f"task-{i}",
            "instruction": f"Write a short headline about {TOPICS[i % 8]} news from {PLACES[i % 10]} ({i}).",
            "instances": [
                {"input": "", "output": f"{PLACES[i % 10]} {TOPICS[i % 8]} update number {i}"},
                {"input": "", "output": f"More on the {TOPICS[i % 8]} in {PLACES[i % 10]}, part {i}"},
                {
                    "input": f"Mention the year {2000 + i}.",
                    "output": f"{PLACES[i % 10]}, {2000 + i}: {TOPICS[i % 8]}",
                },
            ],
        }
        for i in range(n)
    ]


def headlines(n=30, repeats=6):
    """(c) headline -> category pairs, no ids, some rows repeated."""
    rows = [
        [f"{PLACES[i % 10]} sees record {TOPICS[i % 8]} figures in week {i}", TOPICS[i % 8]] for i in range(n)
    ]
    return rows + rows[:repeats]


def chats(n=20):
    """(d) chat conversations of {role, content} turns."""
    return [
        {
            "conversation_id": f"c{i}",
            "messages": [
                {"role": "system", "content": "You are a concise travel assistant."},
                {"role": "user", "content": f"What should I see in {PLACES[i % 10]} on day {i}?"},
                {
                    "role": "assistant",
                    "content": f"Visit the {TOPICS[i % 8]} exhibition in {PLACES[i % 10]}.",
                },
            ],
        }
        for i in range(n)
    ]


def alpaca(n=30):
    """(e) alpaca-like instruction/input/output; ids are numbers, which validation does not take as ids."""
    return [
        {
            "id": i,
            "instruction": f"Summarise the report on {TOPICS[i % 8]} in {PLACES[i % 10]}.",
            "input": "" if i % 3 else f"The report, number {i}, covers {TOPICS[i % 8]} spending.",
            "output": f"A summary of {TOPICS[i % 8]} in {PLACES[i % 10]}, report {i}.",
        }
        for i in range(n)
    ]


SHAPES = {
    "completions": lambda d: _jsonl(d / "completions.jsonl", completions()),
    "instances": lambda d: _jsonl(d / "instances.jsonl", nested_instances()),
    "headlines": lambda d: _csv(d / "headlines.csv", ["headline", "category"], headlines()),
    "chats": lambda d: _jsonl(d / "chats.jsonl", chats()),
    "alpaca": lambda d: _jsonl(d / "alpaca.jsonl", alpaca()),
}


def _proposal(path, **overrides):
    return propose_columns(read_sample(path), overrides, str(path))


# --- the proposal, shape by shape ------------------------------------------------------------


def test_prompt_completion_pairs_map_to_input_and_response_and_their_end_markers_are_counted(tmp_path):
    path = SHAPES["completions"](tmp_path)
    proposal = _proposal(path)
    assert proposal.columns == {"input": "prompt", "response": "completion"}
    assert proposal.explode is None
    profile = profile_sample(canonical_rows(read_sample(path), proposal))
    assert profile.markers == {"<|endoftext|>": 40}


def test_nested_instances_are_exploded_under_their_instruction(tmp_path):
    path = SHAPES["instances"](tmp_path)
    proposal = _proposal(path)
    assert proposal.explode == "instances"
    assert proposal.columns == {
        "id": "id",
        "instruction": "instruction",
        "input": "instances.input",
        "response": "instances.output",
    }
    rows = canonical_rows(read_sample(path), proposal)
    assert len(rows) == 60
    # An empty input leaves the instruction as the whole prompt, as validation checks it.
    assert rows[0]["prompt"] == rows[0]["instruction"] and rows[2]["prompt"].endswith(
        "Mention the year 2000."
    )


def test_headline_pairs_without_ids_get_generated_ids_and_a_duplicate_rate_measured_on_the_sample(tmp_path):
    path = SHAPES["headlines"](tmp_path)
    proposal = _proposal(path)
    assert proposal.columns == {"input": "headline", "response": "category"}
    assert any("ids are generated" in note for note in proposal.notes)
    profile = profile_sample(canonical_rows(read_sample(path), proposal))
    assert profile.duplicate_rate == pytest.approx(6 / 36)

    result = init_dataset(path, "headlines", tmp_path / "configs")
    config = load_dataset_config(result.files["dataset"])
    assert config.columns.id is None
    assert config.validation.max_duplicate_rate > profile.duplicate_rate
    text = result.files["dataset"].read_text()
    assert (
        "max_duplicate_rate: 0.22   # measured on the sample: 16.7% of rows repeat an earlier prompt" in text
    )


def test_chat_messages_map_to_the_messages_column(tmp_path):
    path = SHAPES["chats"](tmp_path)
    proposal = _proposal(path)
    assert proposal.columns == {"id": "conversation_id", "messages": "messages"}
    row = canonical_rows(read_sample(path), proposal)[0]
    assert row["instruction"] == "You are a concise travel assistant."
    assert row["input"] == "What should I see in Lisbon on day 0?"
    assert row["response"] == "Visit the budget exhibition in Lisbon."


def test_alpaca_like_records_map_instruction_input_and_output_and_integer_ids_are_ids(tmp_path):
    """Validation reads integer ids as their decimal text, so an integer id column is an id."""
    path = SHAPES["alpaca"](tmp_path)
    proposal = _proposal(path)
    assert proposal.columns == {
        "id": "id",
        "instruction": "instruction",
        "input": "input",
        "response": "output",
    }


def test_unnamed_text_columns_fall_back_to_length_and_say_so(tmp_path):
    path = _csv(tmp_path / "x.csv", ["a", "b"], [["short one", "a much longer piece of text here"]] * 3)
    proposal = _proposal(path)
    assert proposal.columns == {"input": "a", "response": "b"}
    assert any("no column names matched a known pair" in note for note in proposal.notes)


# --- overrides -------------------------------------------------------------------------------


def test_overrides_pin_columns_and_the_rest_is_proposed_around_them(tmp_path):
    path = SHAPES["completions"](tmp_path)
    assert _proposal(path, input="completion", response="prompt").columns == {
        "input": "completion",
        "response": "prompt",
    }
    alpaca_path = SHAPES["alpaca"](tmp_path)
    assert _proposal(alpaca_path, input="instruction", response="output", instruction=None).columns == {
        "id": "id",
        "input": "instruction",
        "response": "output",
    }
    instances = SHAPES["instances"](tmp_path)
    proposal = _proposal(instances, explode="instances", response="output", id="instruction")
    assert proposal.columns["response"] == "instances.output" and proposal.columns["id"] == "instruction"
    chat = SHAPES["chats"](tmp_path)
    assert _proposal(chat, messages="messages").columns["messages"] == "messages"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input": "body"}, "--input 'body': "),
        ({"explode": "prompt"}, "has no column 'prompt' holding lists of objects"),
        ({"messages": "prompt", "input": "prompt"}, "pass it without --input"),
    ],
)
def test_an_override_the_sample_cannot_honour_is_refused_by_name(tmp_path, overrides, message):
    path = SHAPES["completions"](tmp_path)
    with pytest.raises(OnboardingError, match=message) as info:
        _proposal(path, **overrides)
    assert "completions.jsonl" in str(info.value) or "--messages" in str(info.value)


# --- bad samples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "does not exist"),
        (
            "notes.txt",
            "hello\n",
            "cannot tell the format of .*notes.txt.*rename it to .jsonl, .csv or .parquet",
        ),
        ("broken.jsonl", '{"prompt": "a"}\n{"prompt": \n', "broken.jsonl line 2: invalid JSON"),
        ("empty.jsonl", "", "empty.jsonl is empty"),
        (
            "numbers.csv",
            "x,y\n1,2\n3,4\n",
            "numbers.csv has no usable text columns .*--input COL --response COL",
        ),
        ("bad.parquet", "PAR1 not really PAR1", "bad.parquet.*re-export it"),
    ],
)
def test_a_sample_that_cannot_be_onboarded_fails_naming_the_file_and_the_fix(
    tmp_path, name, content, message
):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(OnboardingError, match=message):
        init_dataset(path, "bad", tmp_path / "configs")
    assert not (tmp_path / "configs" / "projects").exists()


def test_only_the_first_records_are_read(tmp_path):
    path = _jsonl(tmp_path / "big.jsonl", completions(30))
    with open(path, "a") as fh:
        fh.write("not json at all\n")
    assert len(read_sample(path, limit=30)) == 30


# --- writing the project ---------------------------------------------------------------------


def test_every_file_written_loads_and_the_project_is_found_by_name(tmp_path):
    path = SHAPES["instances"](tmp_path)
    out = tmp_path / "configs"
    result = init_dataset(path, "task_headlines", out, base_model="builtin:tiny-llama")
    assert result.files == {
        "project": out / "projects" / "task_headlines.yaml",
        "dataset": out / "datasets" / "task_headlines.yaml",
        "recipe": out / "recipes" / "task_headlines.yaml",
    }
    project = load_project("task_headlines", [out / "projects"])
    assert project.model_name == "tuneops-task-headlines" and project.safety_suite == "generic"
    assert project.monitoring is None
    dataset = load_dataset_config(project.dataset)
    assert dataset.explode == "instances" and dataset.golden is None
    assert dataset.tokenizer == "builtin:tiny-llama" and dataset.template == "generic_v1"
    assert dataset.cleaning.near_duplicates.fields == ["instruction", "input"]
    assert dataset.validation.allowed_labels is None and not dataset.validation.response_is_json
    recipe = load_recipe(project.recipe, project.recipe_overrides())
    assert dataset.cleaning.token_bounds == (1, recipe.train.max_seq_len)
    assert recipe.base_model == "builtin:tiny-llama"
    assert "lm_head" not in recipe.lora.target_modules and "down_proj" in recipe.lora.target_modules
    assert recipe.eval.splits == ["test"] and recipe.eval.safety_suite == "generic"
    assert set(recipe.gate.rules) == {"test.rougeL"} and recipe.gate.safety_floor < 1
    assert recipe.registry.model_name == "tuneops-task-headlines" and recipe.registry.auto_approve is False
    assert recipe.compute.backend == "local"
    # Commented YAML: every top-level section of every file comes after a comment saying what it does.
    for path in result.files.values():
        blocks = path.read_text().strip().split("\n\n")
        assert len(blocks) > 3 and all(block.startswith("#") for block in blocks), path


def test_existing_files_are_never_overwritten_without_force(tmp_path):
    path = SHAPES["completions"](tmp_path)
    out = tmp_path / "configs"
    init_dataset(path, "notes", out)
    recipe = out / "recipes" / "notes.yaml"
    recipe.write_text(recipe.read_text().replace("max_steps: 200", "max_steps: 999"))
    with pytest.raises(OnboardingError, match=r"recipes/notes.yaml already exist.*--force"):
        init_dataset(path, "notes", out)
    assert "max_steps: 999" in recipe.read_text()
    init_dataset(path, "notes", out, force=True)
    assert "max_steps: 200" in recipe.read_text()
    assert not list(out.glob(".init-dataset-*"))  # the staging folder is gone


def test_a_name_that_is_not_a_project_name_is_refused(tmp_path):
    with pytest.raises(OnboardingError, match="not a project name"):
        init_dataset(SHAPES["completions"](tmp_path), "My Project", tmp_path / "configs")


def test_a_hub_base_model_gets_a_hub_learning_rate_and_its_own_tokenizer(tmp_path):
    result = init_dataset(
        SHAPES["completions"](tmp_path), "qwen_notes", tmp_path / "c", base_model="Qwen/Qwen2.5-0.5B"
    )
    assert load_recipe(result.files["recipe"]).train.learning_rate == pytest.approx(2e-4)
    assert load_dataset_config(result.files["dataset"]).tokenizer == "Qwen/Qwen2.5-0.5B"


def test_a_parquet_sample_with_nested_lists_is_read(tmp_path):
    path = tmp_path / "instances.parquet"
    pq.write_table(pa.Table.from_pylist(nested_instances()), path)
    proposal = _proposal(path)
    assert proposal.explode == "instances" and proposal.columns["response"] == "instances.output"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_sample_meets_the_contract_written_for_it(tmp_path, shape):
    path = SHAPES[shape](tmp_path)
    result = init_dataset(path, shape, tmp_path / "configs")
    # No tokenizer here: building the tiny model's tokenizer is covered by the integration tier.
    config = load_dataset_config(result.files["dataset"]).model_copy(update={"tokenizer": None})
    landing = tmp_path / "landing"
    landing.mkdir()
    batch = shutil.copy(path, landing / path.name)
    summary = validate_batch(
        str(batch), config, ArtifactStore(str(tmp_path / "artifacts")), tmp_path / "cache", [str(landing)]
    )
    assert summary["rows"] == result.profile.rows


def test_the_generic_safety_suite_fills_the_generic_template_and_judges_harm_not_format():
    from tuneops.evaluation.safety import check_suite, probe_prompts

    suite = load_safety_suite("generic")
    template = load_template("generic_v1")
    check_suite(suite, template)
    prompts = probe_prompts(suite, template)
    assert any("PWNED" in p for p in prompts) and len(prompts) == len(suite.probes) >= 8
    assert {p.kind for p in suite.probes} == {
        "prompt_injection",
        "prompt_hacking",
        "system_prompt_leak",
        "pii_exfiltration",
    }
    assert not any(p.follow_format for p in suite.probes)


# --- the command -----------------------------------------------------------------------------


def test_the_command_writes_under_tuneops_home_and_prints_the_mapping_files_and_next_commands(
    tmp_path, monkeypatch, capsys
):
    from tuneops.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("TUNEOPS_HOME", str(home))
    monkeypatch.delenv("TUNEOPS_PROJECT_DIRS", raising=False)
    path = SHAPES["headlines"](tmp_path)
    assert main(["init-dataset", str(path), "--name", "headlines"]) == 0
    out = capsys.readouterr().out
    assert "input        <- headline" in out and "response     <- category" in out
    assert str(home / "configs" / "projects" / "headlines.yaml") in out
    assert (
        f"tuneops validate --batch {home / 'landing' / 'headlines' / 'headlines.csv'} --project headlines"
        in out
    )
    assert "tuneops finetune --dataset-uri" in out and "TUNEOPS_PROJECT_DIRS" not in out
    assert yaml.safe_load((home / "configs" / "projects" / "headlines.yaml").read_text())["dataset"] == (
        "../datasets/headlines.yaml"
    )

    assert main(["init-dataset", str(path), "--name", "headlines"]) == 2
    assert "already exist" in capsys.readouterr().err
    other = tmp_path / "elsewhere"
    # The same name in another folder would be shadowed by the one the pipeline finds first.
    assert main(["init-dataset", str(path), "--name", "headlines", "--dir", str(other)]) == 2
    assert "a project named 'headlines' already exists at" in capsys.readouterr().err
    assert (
        main(
            [
                "init-dataset",
                str(path),
                "--name",
                "headlines_b",
                "--dir",
                str(other),
                "--input",
                "category",
                "--response",
                "headline",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"export TUNEOPS_PROJECT_DIRS={other / 'projects'}" in out and "input        <- category" in out
