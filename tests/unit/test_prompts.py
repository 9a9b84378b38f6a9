import json

import pandas as pd
import pytest

from tuneops.config import PromptTemplate, load_dataset_config, load_template
from tuneops.prompts import (
    TemplateError,
    assign_split,
    build_prompt_dataset,
    check_template,
    load_prompt_dataset,
)
from tuneops.sample_data import generate_tickets
from tuneops.store import ArtifactStore
from tuneops.validation import validate_batch


@pytest.fixture
def setup(tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = load_dataset_config("support_tickets")
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in generate_tickets(120, seed=7)))
    validated = validate_batch(str(batch), config, store, tmp_path / "cache")
    return store, config, validated["key"]


def test_dataset_is_versioned_by_content_and_reused(setup):
    store, config, key = setup
    template = load_template(config.template)
    first = build_prompt_dataset([key], config, template, store)
    again = build_prompt_dataset([key], config, template, store)
    assert again["version"] == first["version"] and again["reused"] is True
    assert sum(first["counts"].values()) == 120
    changed = template.model_copy(update={"system": "Different system prompt."})
    assert build_prompt_dataset([key], config, changed, store)["version"] != first["version"]


def test_rows_render_the_template_and_keep_the_response(setup):
    store, config, key = setup
    result = build_prompt_dataset([key], config, load_template(config.template), store)
    ds = load_prompt_dataset(store.fetch_dir(result["key"]))
    row = ds["train"][0]
    assert row["prompt"].startswith("### System\n") and row["prompt"].endswith("### Triage\n")
    assert json.loads(row["response"])["team"]
    source = pd.read_parquet(store.fetch_dir(key) / "data.parquet").set_index("id")
    assert row["response"] == source.loc[row["id"], "response"]


def test_split_is_a_stable_function_of_the_record_id():
    ids = [f"T{i}" for i in range(2000)]
    splits = [assign_split(i, 0.1, 0.1) for i in ids]
    assert splits == [assign_split(i, 0.1, 0.1) for i in ids]
    assert 150 < splits.count("test") < 250 and 150 < splits.count("validation") < 250


def test_template_with_unknown_field_fails_before_rendering():
    bad = PromptTemplate(id="t", prompt="{{ input }} {{ customer_tier }}")
    with pytest.raises(TemplateError, match=r"\['customer_tier'\].*available fields"):
        check_template(bad, {"id", "input", "response"})
    with pytest.raises(TemplateError, match="syntax error"):
        check_template(PromptTemplate(id="t", prompt="{{ input "), {"input"})


def test_cleaning_normalises_redacts_and_drops_duplicate_content():
    from tuneops.prompts import clean_records

    records = [
        {"id": "a", "input": "Ｈｉ,  the ﬁle\t is   broken.  Mail me at dana@example.com ", "response": "ok"},
        {"id": "b", "input": "Hi, the file is broken. Mail me at lee@example.org", "response": "ok"},
        {"id": "c", "input": "Call +1 415-555-0199 about card 4111 1111 1111 1111", "response": "ok"},
    ]
    kept, report = clean_records(records, ["input", "response"])
    assert [r["id"] for r in kept] == ["a", "c"]
    assert kept[0]["input"] == "Hi, the file is broken. Mail me at <EMAIL>"
    assert kept[1]["input"] == "Call <PHONE> about card <CARD>"
    assert report == {"dropped": {"duplicate_content": 1}, "pii_redacted": {"email": 2, "phone": 1, "card": 1}}


def test_no_pii_reaches_the_dataset_and_drops_are_counted(tmp_path):
    from tuneops.pii import find_pii

    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = load_dataset_config("support_tickets").model_copy(update={"tokenizer": None})
    records = generate_tickets(120, seed=7)
    for r in records[:10]:
        r["body"] += " You can reach me at someone@example.com."
    # The same ticket under two ids: it must end up once, so never in train and test both.
    records[20] = {**records[21], "ticket_id": "T-copy"}
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in records))
    validated = validate_batch(str(batch), config, store, tmp_path / "cache")
    result = build_prompt_dataset([validated["key"]], config, load_template(config.template), store)
    manifest = json.loads((store.fetch_dir(result["key"]) / "manifest.json").read_text())
    assert manifest["dropped"]["duplicate_content"] == 1
    expected_emails = sum(find_pii(r["body"]).get("email", 0) for i, r in enumerate(records) if i != 20)
    assert expected_emails >= 10 and manifest["pii_redacted"]["email"] == expected_emails
    ds = load_prompt_dataset(store.fetch_dir(result["key"]))
    assert sum(len(ds[s]) for s in ds) == 119
    assert not any(find_pii(row["prompt"]) for s in ds for row in ds[s])
    assert sum(row["prompt"].count("<EMAIL>") for s in ds for row in ds[s]) == expected_emails
