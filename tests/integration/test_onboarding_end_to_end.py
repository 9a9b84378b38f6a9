"""Onboarding end to end: `tuneops init-dataset` on a sample, then the project runs as it was written.

For three shapes of data (prompt/completion pairs ending in <|endoftext|>, an instruction with
nested instances, headline pairs in CSV without ids and with repeated rows), ~300 deterministic
records land in the landing root; `tuneops init-dataset` writes the project under
<TUNEOPS_HOME>/configs, and validate -> build-prompts -> finetune run as subprocesses, as a user
would run them, naming only the project. Each must reach a gate verdict.
"""

import csv
import json
import random

import pytest

from tests.support.cli import json_with, tuneops

pytestmark = pytest.mark.integration

CITIES = [
    "Oslo",
    "Lima",
    "Kyoto",
    "Accra",
    "Perth",
    "Quito",
    "Turin",
    "Davao",
    "Brno",
    "Ghent",
    "Cork",
    "Riga",
]
COLORS = ["red", "blue", "green", "black", "white", "yellow", "grey", "navy"]
MATERIALS = ["cotton", "wool", "leather", "linen", "denim", "silk", "canvas", "suede"]
ITEMS = ["shirt", "jacket", "bag", "scarf", "hat", "dress", "coat", "belt", "skirt", "vest"]
AUDIENCES = ["kids", "women", "men", "teens", "runners", "hikers", "students", "travellers"]
CATEGORIES = {
    "sports": (
        ["striker", "coach", "goalkeeper", "captain"],
        ["scores twice", "signs a new deal", "retires"],
    ),
    "business": (
        ["bank", "retailer", "airline", "start-up"],
        ["reports record profit", "cuts jobs", "raises prices"],
    ),
    "science": (
        ["telescope", "lab", "probe", "research team"],
        ["finds new planet", "maps the seabed", "tests a vaccine"],
    ),
    "weather": (
        ["storm", "heatwave", "flood", "snowfall"],
        ["closes schools", "breaks records", "delays flights"],
    ),
    "culture": (
        ["museum", "orchestra", "festival", "theatre"],
        ["opens new wing", "sells out", "wins an award"],
    ),
}


def completion_records(n: int, seed: int) -> list[dict]:
    """(a) Product descriptions to titles; every completion ends in <|endoftext|>; no ids."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        color, material, item = rng.choice(COLORS), rng.choice(MATERIALS), rng.choice(ITEMS)
        audience, size = rng.choice(AUDIENCES), rng.randint(1, 60)
        records.append(
            {
                "prompt": f"Write a product title for a {color} {material} {item} for {audience}, size {size}.",
                "completion": f"{color.title()} {material.title()} {item.title()} for {audience.title()} "
                f"- Size {size}<|endoftext|>",
            }
        )
    return records


def instance_records(n: int, seed: int) -> list[dict]:
    """(b) An instruction per record with nested instances, two of three with an empty input."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        color, material, item, city = (
            rng.choice(COLORS),
            rng.choice(MATERIALS),
            rng.choice(ITEMS),
            rng.choice(CITIES),
        )
        price = rng.randint(5, 400)
        records.append(
            {
                "id": f"task-{i:04d}",
                "instruction": f"Describe a {color} {material} {item} sold in {city} in one sentence.",
                "instances": [
                    {"input": "", "output": f"A {color} {item} of {material}, from a shop in {city}."},
                    {"input": "", "output": f"Made of {material}, this {color} {item} comes from {city}."},
                    {
                        "input": f"Mention its price of {price} euros.",
                        "output": f"A {color} {material} {item} from {city} for {price} euros.",
                    },
                ],
            }
        )
    return records


def headline_rows(n: int, seed: int, repeats: int) -> list[list[str]]:
    """(c) headline -> category rows, no ids, the first ``repeats`` rows repeated at the end."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        category = rng.choice(sorted(CATEGORIES))
        subjects, events = CATEGORIES[category]
        week = rng.randint(1, 52)
        rows.append(
            [f"{rng.choice(CITIES)} {rng.choice(subjects)} {rng.choice(events)} in week {week}", category]
        )
    return rows + rows[:repeats]


def _landing(name: str):
    from tuneops.core.settings import load_settings

    folder = load_settings().home / "landing" / "onboarding" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_sample(shape: str):
    folder = _landing(shape)
    if shape == "completions":
        path = folder / "completions.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in completion_records(300, seed=1)))
    elif shape == "instances":
        path = folder / "instances.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in instance_records(100, seed=2)))
    else:
        path = folder / "headlines.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["headline", "category"])
            writer.writerows(headline_rows(300, seed=3, repeats=30))
    return path


@pytest.fixture(scope="module", params=["completions", "instances", "headlines"])
def onboarded(request):
    from tuneops.contracts import DatasetManifest
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.data.prompts import load_prompt_dataset

    shape = request.param
    name = f"onboard_{shape}"
    sample = write_sample(shape)
    # The tiny model: three shapes of 30 steps each on the default SmolLM2 would take minutes each;
    # the real model's own chain is tests/integration/test_real_model.py.
    init = tuneops("init-dataset", str(sample), "--name", name, "--base-model", "builtin:tiny-llama")
    validated = json_with(tuneops("validate", "--batch", str(sample), "--project", name), "uri")
    built = json_with(tuneops("build-prompts", "--validated", validated["uri"], "--project", name), "uri")
    finetuned = json_with(
        # A failed gate exits 1: either way the verdict is what this test is after.
        tuneops(
            "finetune",
            "--dataset-uri",
            built["uri"],
            "--project",
            name,
            "--set",
            "train.max_steps=30",
            ok=(0, 1),
        ),
        "decision",
    )
    store = ArtifactStore.from_settings(load_settings())
    dataset_dir = store.fetch_dir(store.key_of(built["uri"]))
    return {
        "shape": shape,
        "name": name,
        "init": init,
        "finetune": finetuned,
        "manifest": DatasetManifest.load(dataset_dir),
        "splits": load_prompt_dataset(dataset_dir),
    }


def test_the_written_project_runs_to_a_gate_verdict(onboarded):
    from tuneops.config import load_project
    from tuneops.core.settings import load_settings

    assert "Proposed mapping" in onboarded["init"] and "tuneops validate --batch" in onboarded["init"]
    home = load_settings().home
    project = load_project(onboarded["name"], [home / "configs" / "projects"])
    assert project.dataset == str(home / "configs" / "datasets" / f"{onboarded['name']}.yaml")
    decision = onboarded["finetune"]["decision"]
    assert decision["passed"] in (True, False)
    assert decision["deciding_rule"], decision
    assert onboarded["manifest"].dataset == onboarded["name"]
    assert onboarded["manifest"].counts["train"] > 0 and onboarded["manifest"].counts["test"] > 0
    if onboarded["shape"] == "headlines":  # no ids, repeated rows: content-hash ids, repeats dropped
        assert onboarded["manifest"].dropped["duplicate_id"] >= 30, onboarded["manifest"].dropped


def test_end_of_text_markers_are_stripped_from_the_responses(onboarded):
    responses = [r for split in onboarded["splits"].values() for r in split["response"]]
    assert responses and not any("<|endoftext|>" in r for r in responses)
    if onboarded["shape"] == "completions":
        assert onboarded["manifest"].markers_stripped.get("<|endoftext|>", 0) > 0
