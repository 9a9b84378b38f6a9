import json

from tuneops.core.sample_data import CATEGORIES, generate_tickets, pretraining_corpus


def test_same_seed_same_records_and_unique_ids():
    a, b = generate_tickets(300, seed=3), generate_tickets(300, seed=3)
    assert a == b
    assert len({t["ticket_id"] for t in a}) == 300
    assert generate_tickets(5, seed=4) != generate_tickets(5, seed=3)


def test_triage_follows_the_text():
    for t in generate_tickets(200, seed=1):
        triage = json.loads(t["triage"])
        assert triage["team"] == CATEGORIES[triage["category"]]["team"]
        assert triage["priority"] in {"urgent", "high", "normal", "low"}


def test_pretraining_corpus_never_contains_triage_replies():
    corpus = "\n".join(pretraining_corpus(200))
    assert '"category":' not in corpus and '"priority":' not in corpus
