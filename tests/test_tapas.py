"""Tests of utils.tapas: executing TAPAS answers, the table/question generator, the vocabulary."""

import math
import random
import re

import pandas as pd
import pytest

from utils import tapas


# --- execute_answer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aggregator, cells, expected",
    [
        ("SUM", ["10", "36", "24", "46", "19", "3"], 138),
        ("AVERAGE", ["10", "36", "24", "46", "19", "3"], 23),
        ("AVERAGE", ["1", "2"], 1.5),
        ("COUNT", ["36", "24", "46"], 3),
        ("COUNT", [], 0),
        ("NONE", ["Summarization"], "Summarization"),
        ("NONE", ["a", "b"], ["a", "b"]),
        ("SUM", ["1,200", "3.5"], 1203.5),
        ("SUM", [], 0),
        ("sum", ["2", "2"], 4),
        (1, ["2", "2"], 4),  # an index into AGGREGATION_LABELS
        (3, ["x", "y"], 2),
    ],
)
def test_execute_answer_values(aggregator, cells, expected):
    value = tapas.execute_answer(aggregator, cells)
    assert value == expected
    assert type(value) is type(expected)


def test_execute_answer_average_is_exact_mean():
    cells = ["4.99", "12.5", "7"]
    assert math.isclose(tapas.execute_answer("AVERAGE", cells), (4.99 + 12.5 + 7) / 3)


def test_execute_answer_non_numeric_cell_under_sum_names_the_cell():
    with pytest.raises(ValueError, match=r"SUM needs numeric cells: cell 'Summarization' is not a number"):
        tapas.execute_answer("SUM", ["10", "Summarization"])
    with pytest.raises(ValueError, match="AVERAGE needs numeric cells"):
        tapas.execute_answer("AVERAGE", ["n/a"])


@pytest.mark.parametrize(
    "aggregator, cells, error, message",
    [
        ("MAX", ["1"], ValueError, "unknown aggregator 'MAX'"),
        (7, ["1"], ValueError, "aggregator index 7"),
        (None, ["1"], TypeError, "aggregator must be a str"),
        ("SUM", "10", TypeError, "cells must be a list"),
        ("SUM", [None], TypeError, "each cell must be a str"),
        ("NONE", [], ValueError, "NONE with no selected cell"),
        ("AVERAGE", [], ValueError, "AVERAGE of no selected cell"),
    ],
)
def test_execute_answer_bad_input(aggregator, cells, error, message):
    with pytest.raises(error, match=message):
        tapas.execute_answer(aggregator, cells)


def test_execute_pipeline_answer():
    answer = {"answer": "SUM > 10, 36", "coordinates": [(0, 4), (1, 4)], "cells": ["10", "36"], "aggregator": "SUM"}
    assert tapas.execute_pipeline_answer(answer) == 46
    assert tapas.execute_pipeline_answer({"answer": "74", "cells": ["74"]}) == "74"  # no aggregation head
    with pytest.raises(TypeError, match="'cells' key"):
        tapas.execute_pipeline_answer({"answer": "74"})


def test_denotation_match():
    assert tapas.denotation_match("74", 74)
    assert tapas.denotation_match(23.0, 23)
    assert tapas.denotation_match(" Question  answering", "question answering")
    assert tapas.denotation_match(["1", "2"], [1, 2])
    assert not tapas.denotation_match("74", 75)
    assert not tapas.denotation_match("Summarization", 4)
    assert not tapas.denotation_match(["1"], [1, 2])


def test_prepare_table_casts_to_str_and_resets_index():
    frame = pd.DataFrame({"name": ["a", "b", "c"], "pages": [3, 1, 2]}).sort_values("pages")
    table = tapas.prepare_table(frame)
    assert list(table.index) == [0, 1, 2]
    assert table["pages"].tolist() == ["1", "2", "3"]
    assert all(isinstance(v, str) for v in table.to_numpy().ravel())


@pytest.mark.parametrize(
    "table, error, message",
    [
        (pd.DataFrame(), ValueError, r"the table is empty \(0 rows, 0 columns\)"),
        (pd.DataFrame({"a": []}), ValueError, "the table is empty"),
        ({"a": ["1"]}, TypeError, "must be a pandas DataFrame"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), ValueError, "column names must be unique"),
    ],
)
def test_prepare_table_bad_input(table, error, message):
    with pytest.raises(error, match=message):
        tapas.prepare_table(table)


# --- the generator --------------------------------------------------------------------------


def test_book_questions_gold_values():
    questions, table = tapas.book_examples()
    assert [gold for _, _, gold in questions] == ["Summarization", 138, 74, 3]
    assert table.shape == (6, 5)
    assert table.loc[3, "number_of_pages"] == "46"


def test_generator_is_seeded():
    a = tapas.generate_examples(3, seed=5)
    b = tapas.generate_examples(3, seed=5)
    c = tapas.generate_examples(3, seed=6)
    assert [(e.question, e.gold) for e in a] == [(e.question, e.gold) for e in b]
    assert [(e.question, e.gold) for e in a] != [(e.question, e.gold) for e in c]


def test_generated_examples_are_consistent():
    examples = tapas.generate_examples(40, seed=0)
    kinds = {e.kind for e in examples}
    assert kinds >= {"lookup", "lookup by id", "sum", "average", "count with condition", "count rows"}
    assert {e.aggregator for e in examples} == {"NONE", "SUM", "AVERAGE", "COUNT"}
    for e in examples:
        assert all(isinstance(v, str) for v in e.table.to_numpy().ravel())
        assert list(e.table.index) == list(range(len(e.table)))
        # the gold value (from the pandas one-liner) is what executing the right operator on the labelled cells gives
        assert tapas.denotation_match(tapas.execute_answer(e.aggregator, e.answer_text), e.gold), e
        # the labelled cells lie in one column, as TAPAS's single-column selection assumes
        assert len({col for _, col in e.coordinates}) == 1


def _key_column(table):
    return next(c for c in ("name", "player", "city", "product", "title") if c in table.columns)


def test_lookups_name_every_row_once():
    examples = tapas.generate_lookups(12, seed=3)
    assert [(e.question, e.gold) for e in examples] == [(e.question, e.gold) for e in tapas.generate_lookups(12, seed=3)]
    tables = {}
    for e in examples:
        assert e.kind == "lookup" and e.aggregator == "NONE" and len(e.coordinates) == 1
        row, _ = e.coordinates[0]
        tables.setdefault(id(e.table), []).append(row)
        # the gold value is the labelled cell, and the question names that cell's row by its key
        assert tapas.denotation_match(e.answer_text[0], e.gold), e
        key = e.table.iat[row, list(e.table.columns).index(_key_column(e.table))]
        assert key.lower() in e.question.lower().replace("-", " "), (key, e.question)
    assert len(tables) == 12
    assert all(rows == list(range(len(rows))) for rows in tables.values())
    with pytest.raises(ValueError, match="n_tables must be a positive int"):
        tapas.generate_lookups(0)


def test_generator_gold_uses_pandas_on_numbers():
    frame, schema = tapas.make_table(3, theme="players", n_rows=5)
    assert frame.shape[0] == 5 and schema["entity"] == ("player", "players")
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    assert numeric
    column = numeric[0]
    assert tapas.run_pandas(f'df["{column}"].sum()', frame) == int(frame[column].sum())
    assert tapas.run_pandas("len(df)", frame) == 5


def test_generator_table_shapes_vary():
    shapes = {e.table.shape for e in tapas.generate_examples(30, seed=1)}
    assert len({rows for rows, _ in shapes}) >= 3
    assert len({cols for _, cols in shapes}) >= 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_tables=0), "n_tables must be a positive int"),
        (dict(n_tables=2, themes=["planets"]), "unknown theme 'planets'"),
    ],
)
def test_generator_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tapas.generate_examples(**kwargs)


def test_make_table_bad_input():
    with pytest.raises(ValueError, match="at least 2 rows"):
        tapas.make_table(0, n_rows=1)
    with pytest.raises(ValueError, match="unknown theme"):
        tapas.make_table(0, theme="planets")


# --- the broad generator and its splits ----------------------------------------------------


def _template_regex(text):
    import re

    parts = re.split(r"\{[a-z]+\}", text)
    pattern = "(.+)".join(re.escape(part) for part in parts)
    return re.compile(pattern, re.IGNORECASE)


def _matches(question, which):
    """The question kinds whose ``which`` templates (and, for training, the columns' own) write ``question``."""
    own = {("lookup", t) for t in ["On which page does the {entity} about {key} start?",
                                   "Where does the {entity} on {key} start?", "On which page does the {entity} about {key} end?"]}
    templates = {(kind, text) for kind, sets in tapas.TEMPLATES.items() for text, _ in sets[which]}
    templates |= own if which == "train" else set()
    return {kind for kind, text in templates if _template_regex(text).fullmatch(question)}


def test_broad_generator_has_a_dozen_themes_and_many_phrasings():
    assert len(tapas.BROAD_THEMES) >= 12 and set(tapas.THEMES) <= set(tapas.BROAD_THEMES)
    assert len(tapas.HELD_OUT_THEMES) >= 4 and not set(tapas.HELD_OUT_THEMES) & set(tapas.BROAD_THEMES)
    for kind, sets in tapas.TEMPLATES.items():
        assert len(sets["train"]) >= 6 and len(sets["held out"]) >= 3 and len(sets["validation"]) >= 2, kind
        assert min(len(sets[w]) for w in ("test", "test2", "test3", "test4")) >= 2, kind
        train, held_out, validation, test, test2, test3, test4 = (
            {t.lower() for t, _ in sets[w]} for w in ("train", "held out", "validation", "test", "test2", "test3", "test4"))
        assert not train & held_out and not validation & (train | held_out), kind
        assert not test & (train | held_out | validation), kind
        assert not test2 & (train | held_out | validation | test), kind
        assert not test3 & (train | held_out | validation | test | test2), kind
        assert not test4 & (train | held_out | validation | test | test2 | test3), kind
    lookups = [t for t, _ in tapas.TEMPLATES["lookup"]["train"]]
    assert any(t.startswith("How many") for t in lookups)  # "how many" is not always COUNT
    sums = " ".join(t for t, _ in tapas.TEMPLATES["sum"]["train"])
    assert "total" in sums and "combined" in sums and "Sum of" in sums
    conditions = " ".join(t for t, _ in tapas.TEMPLATES["count with condition"]["train"])
    for word in ("lower", "higher", "fewer", "more"):
        assert word in conditions


@pytest.mark.parametrize("split", list(tapas.SPLITS))
def test_splits_are_seeded_and_consistent(split):
    examples = tapas.generate_split(split, 40)
    again = tapas.generate_split(split, 40)
    assert [(e.question, e.gold) for e in examples] == [(e.question, e.gold) for e in again]
    assert [e.question for e in examples] != [e.question for e in tapas.generate_split(split, 40, seed=7)]
    assert {e.kind for e in examples} == {"lookup", "lookup by id", "sum", "average", "count with condition", "count rows"}
    groups, which, _ = tapas.SPLITS[split]
    themes = set().union(*groups) if isinstance(groups, tuple) else set(groups)
    assert {e.theme for e in examples} <= themes
    for e in examples:
        assert tapas.denotation_match(tapas.execute_answer(e.aggregator, e.answer_text), e.gold), e
        assert len({col for _, col in e.coordinates}) == 1
        # every question is in its split's templates and, for the unseen phrasings, in no training template
        assert e.kind in _matches(e.question, which), e.question
        earlier = ["train", "held out", "validation", "test", "test2", "test3", "test4"]
        if which in earlier[1:]:  # in no template of the sets before its own
            for other in earlier[:earlier.index(which)]:
                assert e.kind not in _matches(e.question, other), (e.question, other)


def test_splits_hold_out_what_they_say():
    train = tapas.generate_split("train", 200)
    unseen = tapas.generate_split("unseen phrasings", 100)
    themes = tapas.generate_split("unseen themes", 100)
    train_questions = {e.question.lower() for e in train}
    assert not train_questions & {e.question.lower() for e in unseen}
    assert {e.theme for e in themes} == set(tapas.HELD_OUT_THEMES)
    assert not {e.theme for e in train} & {e.theme for e in themes}
    # the original generator's templates are among the training ones: its questions are in-template
    for e in tapas.generate_examples(20, seed=2):
        assert e.kind in _matches(e.question, "train"), e.question
    book_questions, _ = tapas.book_examples()  # and so are the book's four
    assert [bool(_matches(question, "train")) for question, _, _ in book_questions] == [True] * 4
    # validation and test: half their tables from themes of their own, in phrasings of their own
    for split, own in (("validation", tapas.VALIDATION_THEMES), ("test", tapas.TEST_THEMES), ("test2", tapas.TEST2_THEMES),
                       ("test3", tapas.TEST3_THEMES), ("test4", tapas.TEST4_THEMES)):
        examples = tapas.generate_split(split, 100)
        share = sum(e.theme in own for e in examples) / len(examples)
        assert {e.theme for e in examples if e.theme in own} == set(own) and 0.35 < share < 0.65, split
        assert not {e.theme for e in train} & set(own)
    assert not set(tapas.VALIDATION_THEMES) & set(tapas.TEST_THEMES)
    assert not set(tapas.TEST2_THEMES) & (set(tapas.VALIDATION_THEMES) | set(tapas.TEST_THEMES) | set(tapas.HELD_OUT_THEMES))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        tapas.generate_split("dev", 3)
    with pytest.raises(ValueError, match="which must be one of"):
        tapas.broad_questions(*tapas.BROAD_THEMES["books"](random.Random(0), 4), random.Random(0), which="dev")
    with pytest.raises(ValueError, match="n_tables must be a positive int"):
        tapas.generate_split("train", 0)


_YEARS = {"year", "founded", "first_ascent", "launched", "planted", "last_eruption", "year_established",
          "start_page", "end_page", "first_lit", "first_vintage", "opened"}  # neither added up nor averaged
_LEVELS = {"age", "rating", "price", "bread_price", "ticket_price", "price_per_night", "top_speed", "horsepower", "height_m",
           "altitude_m", "summit_m", "lifespan_years", "weight_kg", "weight_g", "length_km", "length_seconds", "runtime",
           "diameter_km", "orbit_days", "days_to_ship", "floors", "offspring", "clear_nights", "years_employed",
           "tower_height_m", "journey_minutes"}  # averaged only


@pytest.mark.parametrize("split", [s for s in tapas.SPLITS if s != "train"])
def test_gold_answers_make_sense(split):
    """A sample of gold answers read as a person would: no total of years, ratings or ages, no
    average of years or start pages, no header that cues an operator, no digits in a name."""
    examples = tapas.generate_split(split, 80)
    sums = averages = 0
    for e in examples:
        column = e.table.columns[e.coordinates[0][1]]
        numbers = [float(e.table.iat[r, e.coordinates[0][1]]) for r, _ in e.coordinates] if e.aggregator in ("SUM", "AVERAGE") else []
        if e.kind == "sum":
            sums += 1
            assert column not in _YEARS | _LEVELS, (column, e.question)
            assert e.gold >= max(numbers)  # a total is at least its largest part
        if e.kind == "average":
            averages += 1
            assert column not in _YEARS, (column, e.question)
            assert min(numbers) <= e.gold <= max(numbers)
        for header in e.table.columns:  # "total", "sum", "average", "count" in a header read as an operator
            assert not re.search(r"(^|_)(total|sum|average|mean|count)(_|$)", header), header
        names = [c for c in e.table.columns if not re.search(r"id|number|chapter|episode|item|track", c)]
        for name in names:
            if e.table[name].str.fullmatch(r"[-0-9.]+").all():
                continue  # a numeric column
            assert not e.table[name].str.contains(r"\d").any(), (name, e.table[name].tolist())
    assert sums > 40 and averages > 60  # most tables still have something to add up and average


def test_random_schemas_never_use_the_held_out_words():
    held_out = tapas.generate_split("unseen themes", 60) + tapas.generate_split("unseen phrasings", 60)
    train = tapas.generate_split("train", 300)
    schemas = [e for e in train if e.theme == tapas.RANDOM_SCHEMA]
    assert 0.3 < len(schemas) / len(train) < 0.5
    # the held-out themes' names and headers, and the held-out phrasings' words, are in no random table
    held_out_words = {w for e in held_out if e.theme in tapas.HELD_OUT_THEMES for w in _words(" ".join(e.table.columns))}
    held_out_words |= {w for sets in tapas.TEMPLATES.values() for t, _ in sets["held out"] for w in _words(t)}
    schema_words = {w for e in schemas for w in _words(" ".join(e.table.columns) + " " + " ".join(e.table.iloc[:, 1:].to_numpy().ravel()))}
    assert not (schema_words - {"id", "name", "number"}) & held_out_words
    assert tapas._plural("party") == "parties" and tapas._plural("box") == "boxes" and tapas._plural("day") == "days"


def _words(text):
    return set(re.findall(r"[a-z]+", text.replace("_", " ").lower()))


def test_accuracy_by_kind_wilson_intervals():
    results = pd.DataFrame({"kind": ["sum"] * 10 + ["lookup"] * 4, "correct": [True] * 9 + [False] + [True] * 4})
    table = tapas.accuracy_by_kind(results)
    assert table.loc["sum", ["right", "asked"]].tolist() == [9, 10]
    assert table.loc["all", "accuracy"] == pytest.approx(13 / 14)
    # Wilson's interval for 9 of 10 at 95%: 0.5958 .. 0.9821 (closed form, z = 1.96)
    z, p, n = 1.959964, 0.9, 10
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert table.loc["sum", "low"] == pytest.approx(centre - half, abs=1e-4)
    assert table.loc["sum", "high"] == pytest.approx(centre + half, abs=1e-4)
    assert table.loc["lookup", "high"] == pytest.approx(1.0)
    with pytest.raises(TypeError, match="'kind' and 'correct' columns"):
        tapas.accuracy_by_kind(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="results is empty"):
        tapas.accuracy_by_kind(results.iloc[:0])
    # the intervals are utils.evaluation's Wilson intervals, at the confidence asked for
    from utils import evaluation

    narrow = tapas.accuracy_by_kind(results, confidence=0.8)
    assert (narrow.loc["all", "low"], narrow.loc["all", "high"]) == pytest.approx(
        (evaluation.wilson(13, 14, 0.8).low, evaluation.wilson(13, 14, 0.8).high))
    with pytest.raises(ValueError, match="no column 'table'"):
        tapas.accuracy_by_kind(results, groups="table")


def test_accuracy_by_kind_by_table_is_wider_when_a_table_is_all_right_or_all_wrong():
    # 8 tables of 6 questions; on 3 tables the model gets everything wrong, on 5 everything right
    table = [t for t in range(8) for _ in range(6)]
    correct = [t >= 3 for t in table]
    kind = ["sum", "lookup", "count"] * 16
    results = pd.DataFrame({"kind": kind, "correct": correct, "table": table})
    plain, grouped = tapas.accuracy_by_kind(results), tapas.accuracy_by_kind(results, groups="table")
    assert grouped[["right", "asked", "accuracy"]].equals(plain[["right", "asked", "accuracy"]])
    assert grouped.loc["all", "accuracy"] == pytest.approx(30 / 48)
    width = lambda frame, kind: frame.loc[kind, "high"] - frame.loc[kind, "low"]  # noqa: E731
    assert width(grouped, "all") > 1.5 * width(plain, "all")
    assert grouped.loc["all", "low"] <= 30 / 48 <= grouped.loc["all", "high"]
    # a kind asked of one table only has no groups to resample: no interval
    one_table = pd.concat([results, pd.DataFrame({"kind": ["average"] * 2, "correct": [True, False], "table": [9, 9]})])
    assert tapas.accuracy_by_kind(one_table, groups="table").loc["average", ["low", "high"]].isna().all()


def test_broad_lookups_name_every_row():
    examples = tapas.broad_lookups(6, seed=1)
    assert all(e.kind == "lookup" and e.aggregator == "NONE" for e in examples)
    rows = [e.coordinates[0][0] for e in examples]
    assert rows.count(0) == 6 and len(examples) >= 18


# --- vocabulary and tokenizer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import TapasTokenizer

    folder = tmp_path_factory.mktemp("vocab")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(tapas.corpus_lines(n_tables=40)), encoding="utf-8")
    vocab = tapas.build_vocab(corpus, folder, vocab_size=400)
    return TapasTokenizer(str(vocab))


def test_vocab_has_special_tokens_first(tokenizer):
    assert tokenizer.convert_tokens_to_ids(tapas.SPECIAL_TOKENS) == list(range(len(tapas.SPECIAL_TOKENS)))
    assert tokenizer.pad_token_id == 0
    assert len(tokenizer) == tokenizer.vocab_size  # [EMPTY] is in the vocabulary, not an added token


def test_the_kept_corpus_vocabulary_is_a_build_of_the_corpus(tmp_path):
    """data/tapas/corpus_vocab.txt, which the notebook's live run reads, is one build of corpus.txt: a
    rebuild orders the ids otherwise and differs in a few tokens only."""
    from utils import data_path

    kept = data_path("tapas", "corpus_vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(kept) == len(set(kept)) == 2000
    assert kept[:len(tapas.SPECIAL_TOKENS)] == tapas.SPECIAL_TOKENS
    again = tapas.build_vocab(data_path("tapas", "corpus.txt"), tmp_path).read_text(encoding="utf-8").splitlines()
    assert len(set(kept) & set(again)) >= 0.97 * len(kept)

def test_build_vocab_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no text to build the vocabulary"):
        tapas.build_vocab(tmp_path / "missing.txt", tmp_path)
    (tmp_path / "t.txt").write_text("a b c")
    with pytest.raises(ValueError, match="vocab_size must be an int above 6"):
        tapas.build_vocab(tmp_path / "t.txt", tmp_path, vocab_size=3)


def test_tokenizer_channels_on_book_table(tokenizer):
    questions, table = tapas.book_examples()
    enc = tokenizer(table=table, queries=questions[3][0])
    types = pd.DataFrame(enc["token_type_ids"], columns=tapas.TOKEN_TYPES)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]"
    assert types["column"].max() == 5 and types["row"].max() == 6
    # number_of_pages cells: ranks 1 (3 pages) .. 6 (46 pages); 36, 24 and 46 are above the question's 20
    pages = types[(types["column"] == 5) & (types["row"] > 0)].drop_duplicates("row").set_index("row")
    assert pages["column rank"].tolist() == [2, 5, 4, 6, 3, 1]
    assert pages["inverse column rank"].tolist() == [5, 2, 3, 1, 4, 6]
    assert pages["numeric relation"].tolist() == [4, 2, 2, 2, 4, 4]  # 4: the question's 20 is greater, 2: less


def test_encode_and_collate(tokenizer):
    examples = tapas.generate_examples(2, seed=0)[:3]
    items = tapas.encode_examples(tokenizer, examples)
    batch = tapas.collate(items)
    length = max(item["input_ids"].shape[0] for item in items)
    assert batch["input_ids"].shape == (3, length)
    assert batch["token_type_ids"].shape == (3, length, 7)
    assert batch["aggregation_labels"].tolist() == [e.aggregation_label for e in examples]
    # the labels mark exactly the tokens of the gold cells
    for item, example in zip(items, examples):
        types = item["token_type_ids"]
        marked = {(int(r) - 1, int(c) - 1) for r, c, lab in zip(types[:, 2], types[:, 1], item["labels"]) if lab}
        assert marked == set(example.coordinates)


def test_cell_probabilities_average_token_probabilities(tokenizer):
    import torch

    questions, table = tapas.book_examples()
    inputs = tokenizer(table=table, queries=questions[0][0], return_tensors="pt")
    types = inputs["token_type_ids"][0]
    # logit +4 on the tokens of "Summarization" (row 5, column 2 in TAPAS's 1-based ids), -4 elsewhere
    in_cell = (types[:, 0] == 1) & (types[:, 2] == 5) & (types[:, 1] == 2)
    logits = torch.where(in_cell, 4.0, -4.0)[None]
    probabilities = tapas.cell_probabilities(inputs, logits, table.shape)
    assert probabilities.shape == (6, 5)
    assert probabilities[4, 1] == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item())
    assert probabilities.sum() == pytest.approx(probabilities[4, 1] + 29 * torch.sigmoid(torch.tensor(-4.0)).item())
    with pytest.raises(ValueError, match="logits of one example"):
        tapas.cell_probabilities(inputs, logits[0], table.shape)


def test_ask_and_evaluate_with_a_stand_in_pipeline():
    questions, table = tapas.book_examples()
    replies = {
        questions[1][0]: {"answer": "SUM > 10, 36", "cells": ["10", "36"], "aggregator": "SUM"},
        questions[0][0]: {"answer": "", "cells": [], "aggregator": "NONE"},  # nothing selected
    }

    def pipe(table, query):
        return replies[query]

    row = tapas.ask(pipe, table, questions[1][0], 46)
    assert row == dict(question=questions[1][0], tapas="SUM > 10, 36", executed=46, gold=46, correct=True)
    row = tapas.ask(pipe, table, questions[0][0], "Summarization")
    assert row["executed"] is None and row["correct"] is False
    assert "correct" not in tapas.ask(pipe, table, questions[1][0])
    detailed = tapas.ask(pipe, table, questions[1][0], 46, details=True)
    assert (detailed["operator"], detailed["cells"]) == ("SUM", 2)
    assert tapas.ask(pipe, table, questions[0][0], details=True)["cells"] == 0
    examples = [e for e in tapas.generate_examples(1, seed=0) if e.kind == "sum"]
    replies[examples[0].question] = {"answer": "", "cells": examples[0].answer_text, "aggregator": "SUM"}
    results = tapas.evaluate(pipe, examples)
    assert results["correct"].tolist() == [True] and results["kind"].tolist() == ["sum"]
    assert tapas.evaluate(pipe, examples, details=True)["operator"].tolist() == ["SUM"]


# --- the shipped checkpoint -------------------------------------------------------------------


def test_shipped_model_meets_the_bars():
    """The checkpoint in data/tapas/small_tapas, through the pipeline, as notebook 05 scores it.

    Trained in five stages (scripts/train_tapas.py's docstring has the commands; the fifth, with three
    seeds, in scripts/tapas_seeds.py; init_metrics.json records the fourth, metrics.json the fifth's
    seed 0, kept as the best on validation's own themes), its weights stored in half precision and
    loaded as float32. Guarded here on regression and validation sets only: the book's four questions, the
    original generator's 143 held-out questions, and the validation split re-scored exactly as
    split_metrics.json records it (python scripts/train_tapas.py --score). No threshold is set on
    the development splits (the first test split among them, test_metrics.json) or on the second test
    split (data/tapas/stage5_runs.json).
    """
    import json

    import torch
    from transformers import TapasForQuestionAnswering, TapasTokenizer, pipeline

    import utils

    folder = utils.data_path("tapas", "small_tapas")
    metrics = json.loads((folder / "metrics.json").read_text())
    model = TapasForQuestionAnswering.from_pretrained(folder)
    assert model.dtype == torch.float32  # half-precision weights, loaded as float32 (config.json's dtype)
    pipe = pipeline("table-question-answering", model=model, tokenizer=TapasTokenizer.from_pretrained(folder))
    questions, table = tapas.book_examples()
    book = [tapas.ask(pipe, table, question, gold)["correct"] for question, _, gold in questions]
    assert book == [True, True, True, True]
    results = tapas.evaluate(pipe, tapas.generate_examples(25, seed=2, sensible=False))  # the recorded regression set
    assert len(results) == metrics["held_out_questions"] == 143
    assert results["correct"].mean() == pytest.approx(metrics["held_out_accuracy"], abs=0.01)
    assert results.groupby("kind")["correct"].mean().min() >= 0.95
    shipped = json.loads((folder / "split_metrics.json").read_text())
    splits = shipped["splits"]
    assert set(splits) == {"validation", "in template", "unseen phrasings", "unseen themes"}
    validation = tapas.accuracy_by_kind(tapas.evaluate(pipe, tapas.generate_split("validation", 30)))
    assert {kind: int(row.right) for kind, row in validation.iterrows()} == {
        kind: score["right"] for kind, score in splits["validation"].items()}
    assert shipped["validation_accuracy"] == splits["validation"]["all"]["accuracy"]
    assert splits["validation"]["all"]["accuracy"] >= VALIDATION_FLOOR


VALIDATION_FLOOR = 0.85  # the shipped model: 142 of 155 (91.6%), split_metrics.json


# --- the loss terms, strong and weak supervision -----------------------------------------------


@pytest.mark.parametrize("weak", [False, True])
def test_loss_terms_add_up_to_the_models_loss(tokenizer, weak):
    import torch
    from transformers import TapasForQuestionAnswering

    torch.manual_seed(0)
    overrides = dict(tapas.WTQ_WEAK_SUPERVISION, init_cell_selection_weights_to_zero=False) if weak else {}
    model = TapasForQuestionAnswering(tapas.small_config(tokenizer.vocab_size, num_hidden_layers=1, **overrides)).eval()
    questions, table = tapas.book_examples()
    # a text answer (its cell), a number that is no cell (138) and a number that is also a cell (3)
    queries = [questions[0][0], questions[1][0], questions[3][0]]
    coordinates = [[(4, 1)], [], [(5, 4)]] if weak else [[(4, 1)], [(r, 4) for r in range(6)], [(1, 4), (3, 4), (2, 4)]]
    texts = [[table.iat[r, c] for r, c in cells] for cells in coordinates]
    inputs = tokenizer(table=table, queries=queries, answer_coordinates=coordinates, answer_text=texts,
                       padding="longest", return_tensors="pt")
    supervision = (dict(float_answer=torch.tensor([float("nan"), 138.0, 3.0])) if weak
                   else dict(aggregation_labels=torch.tensor([0, 1, 3])))
    with torch.no_grad():
        terms = tapas.loss_terms(model, inputs, **supervision)
        loss = model(**inputs, **supervision).loss
    assert terms["total"].item() == pytest.approx(loss.item(), rel=1e-5)
    if weak:
        assert terms["aggregate"][:2].tolist() == [0.0, 1.0]  # text: select cells; 138 is no cell: aggregate
        assert terms["cell_selection"][1] == 0 and terms["answer"][0] == 0
        assert terms["answer"][1] > 0
    else:
        assert terms["aggregate"].isnan().all() and terms["answer"].tolist() == [0, 0, 0]  # no aggregate mask
        assert (terms["cell_selection"] > 0).all() and (terms["aggregation"] > 0).all()
    with pytest.raises(ValueError, match="needs float_answer" if weak else "needs aggregation_labels"):
        tapas.loss_terms(model, inputs)
    with pytest.raises(ValueError, match="model.eval"):
        tapas.loss_terms(model.train(), inputs, **supervision)



def test_supervision_terms_both_kinds_and_the_ambiguous_three(tokenizer):
    questions, table = tapas.book_examples()
    queries = [questions[0][0], questions[1][0], questions[3][0]]
    terms = tapas.supervision_terms(tokenizer, table, queries, operators=["NONE", "SUM", "COUNT"],
                                    strong_cells=[[(4, 1)], [(r, 4) for r in range(6)], [(1, 4), (2, 4), (3, 4)]],
                                    answers=[float("nan"), 138, 3], answer_cells=[[(4, 1)], [], [(3, 0), (5, 4)]])
    assert list(terms.columns) == ["aggregate", "cell_selection", "aggregation", "answer", "kept"]
    strong, weak = terms.loc["strong: operator and cells"], terms.loc["weak: the answer alone"]
    assert strong[["aggregate", "answer", "kept"]].isna().all().all()  # weak-only terms, shown as NaN
    assert weak.loc[queries[0], "aggregate"] == 0 and weak.loc[queries[1], "aggregate"] == 1
    assert weak.loc[queries[1], "cell_selection"] == 0 and weak.loc[queries[1], "answer"] > 0
    with pytest.raises(ValueError, match="equally long"):
        tapas.supervision_terms(tokenizer, table, queries, operators=["NONE"], strong_cells=[], answers=[],
                                answer_cells=[])

def test_shipped_test_split_is_todays_generator(tmp_path):
    """data/tapas/test_split.json is exactly what its command writes with today's generator."""
    import json

    import utils

    shipped = json.loads(utils.data_path("tapas", "test_split.json").read_text())
    assert shipped["command"] == tapas.WRITE_TEST_SPLIT
    tapas.write_test_split(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == shipped
    themes = {q["theme"] for q in shipped["questions"]}
    assert themes & set(tapas.TEST_THEMES) == set(tapas.TEST_THEMES)


def test_second_test_split_is_pinned():
    """generate_split("test2", TEST2_TABLES) is the split that was written down before any model was
    scored on it: a change to the generator that moves one of its questions fails here."""
    import hashlib
    import json

    examples = tapas.generate_split("test2", tapas.TEST2_TABLES)
    records = json.dumps(tapas.split_records(examples), sort_keys=True).encode()
    assert hashlib.sha256(records).hexdigest() == "74ff11b9a62ef06f5dbce2782be9d22611a2aa5e3282dc7bb826f0aed5306cdc"
    assert {e.theme for e in examples} >= set(tapas.TEST2_THEMES) and len(examples) > 300


def test_third_test_split_is_pinned():
    """generate_split("test3", TEST3_TABLES) was written down, with scripts/tapas_test3.py's plan, before any model
    was scored on it; adding it left the training's random-schema words, and so the training split, unchanged."""
    import hashlib
    import json

    examples = tapas.generate_split("test3", tapas.TEST3_TABLES)
    records = json.dumps(tapas.split_records(examples), sort_keys=True).encode()
    assert hashlib.sha256(records).hexdigest() == "cff9f2809e8dd21a9c0ab932ca99dd4bfb7efbcd786dd5cc1c1ee8af9ba24e3c"
    assert {e.theme for e in examples} >= set(tapas.TEST3_THEMES) and len(examples) > 300
    assert not set(tapas.TEST3_THEMES) & (set(tapas.TEST2_THEMES) | set(tapas.TEST_THEMES) | set(tapas.HELD_OUT_THEMES)
                                          | set(tapas.VALIDATION_THEMES) | set(tapas.BROAD_THEMES))
    words = tapas.schema_words()
    assert len(words) == 2481 and hashlib.sha256(" ".join(words).encode()).hexdigest()[:12] == "952529863c57"


def test_recorded_pipeline_replays_the_books_answers():
    questions, table = tapas.book_examples()
    recorded = tapas.recorded_pipeline(tapas.BOOK_NOTEBOOK_ANSWERS)
    rows = [tapas.ask(recorded, table, question, gold) for question, _, gold in questions]
    assert [row["executed"] for row in rows] == ["Summarization", 138, 74, 3] and all(row["correct"] for row in rows)
    assert recorded(table, "What is the total number of pages?")["cells"] == ["10", "36", "24", "46", "19", "3"]
    assert recorded(table, "What's the topic in chapter 4?")["aggregator"] == "NONE"
    with pytest.raises(KeyError, match="no recorded answer"):
        recorded(table, "How many chapters are there?")


def test_fourth_test_split_is_pinned():
    """generate_split("test4", TEST4_TABLES) was written down, with scripts/tapas_pretrain.py's plan, before any
    pre-trained model was scored on it; it leaves the training's random-schema words unchanged too."""
    import hashlib
    import json

    examples = tapas.generate_split("test4", tapas.TEST4_TABLES)
    records = json.dumps(tapas.split_records(examples), sort_keys=True).encode()
    assert hashlib.sha256(records).hexdigest() == "e0667e94e8299766ef10cf71d72e3c4e6c92a5f640908f31f6617d98d7a9793f"
    assert {e.theme for e in examples} >= set(tapas.TEST4_THEMES) and len(examples) > 300
    others = [tapas.TEST3_THEMES, tapas.TEST2_THEMES, tapas.TEST_THEMES, tapas.HELD_OUT_THEMES, tapas.VALIDATION_THEMES,
              tapas.BROAD_THEMES]
    assert not set(tapas.TEST4_THEMES) & set().union(*map(set, others))
    assert len(tapas.schema_words()) == 2481


def test_keyword_rule_on_the_books_questions():
    table = tapas.prepare_table(tapas.book_frame())
    answers = {q: tapas.keyword_rule(table, q) for q, _ in tapas.BOOK_QUESTIONS}
    assert answers["What's the topic in chapter 4?"] == ("NONE", [(4, 1)])  # the row holding 4, the text column
    assert answers["What is the total number of pages?"] == ("SUM", [(r, 4) for r in range(6)])
    assert answers["On which page does the chapter about question-answering start?"] == ("NONE", [(3, 2)])
    # "pages" matches start_page, end_page and number_of_pages alike: without synonyms it counts end pages
    assert answers["How many chapters have more than 20 pages?"] == ("COUNT", [(r, 3) for r in range(1, 6)])
    frame = tapas.book_frame()
    results = tapas.evaluate_rule([tapas.Example(table, q, "", [], code, tapas.run_pandas(code, frame))
                                   for q, code in tapas.BOOK_QUESTIONS])
    assert results["correct"].tolist() == [True, True, True, False]
    assert results["executed"].tolist()[:3] == ["Summarization", 138, "74"]  # a looked-up cell stays text


def test_keyword_rule_cue_words_are_whole_words():
    table = pd.DataFrame({"city": ["Summerton", "Overby", "Addis"], "population": ["10", "20", "30"]})
    assert tapas.keyword_rule(table, "What is the population of Summerton?") == ("NONE", [(0, 1)])
    assert tapas.keyword_rule(table, "How many cities have a population over 15?") == ("COUNT", [(1, 1), (2, 1)])
    assert tapas.keyword_rule(table, "What is the mean population?")[0] == "AVERAGE"
    assert tapas.keyword_rule(table, "How many cities are there?") == ("COUNT", [(0, 0), (1, 0), (2, 0)])
    with pytest.raises(TypeError, match="DataFrame"):
        tapas.keyword_rule("not a table", "What?")


def test_training_synonyms_hold_the_generators_phrases_and_nothing_of_the_held_out_themes():
    synonyms = tapas.training_synonyms()
    assert synonyms["games"] == ["appearances", "games", "matches"]  # players' own phrases and the broad synonym
    assert "items on the menu" in synonyms["dishes"] and "page count" in synonyms["number_of_pages"]
    assert synonyms["name"] and "topic" in synonyms["name"]  # chapters' key phrases
    for themes in (tapas.TEST2_THEMES, tapas.TEST3_THEMES, tapas.TEST4_THEMES, tapas.HELD_OUT_THEMES):
        headers = {h for make in themes.values() for seed in range(40) for h in make(random.Random(seed), 3)[0].columns}
        assert not headers & set(synonyms), sorted(headers & set(synonyms))  # no new theme's header has a synonym


def test_keyword_rule_with_synonyms_finds_a_column_by_another_name():
    table = pd.DataFrame({"player": ["Ana Silva", "Ben Meyer"], "games": ["12", "30"], "goals": ["4", "9"]})
    question = "How many appearances did Ben Meyer make?"
    assert tapas.keyword_rule(table, question) == ("NONE", [(1, 2)])  # no header word in the question: the last column
    assert tapas.keyword_rule(table, question, synonyms=tapas.training_synonyms()) == ("NONE", [(1, 1)])
    assert tapas.keyword_rule(table, "What is the total of appearances?", synonyms={"games": ["appearances"]}) == \
        ("SUM", [(0, 1), (1, 1)])
    # without synonyms, and with synonyms for none of the table's headers, the rule answers alike
    book = tapas.prepare_table(tapas.book_frame())
    for q, _ in tapas.BOOK_QUESTIONS:
        assert tapas.keyword_rule(book, q, synonyms={"unrelated": ["pages"]}) == tapas.keyword_rule(book, q)


def test_synonym_rule_runs_regenerate_each_split_and_check_it_against_its_record():
    import json

    from utils import data_path

    records = [json.loads(data_path("tapas", name).read_text()) for name in ("stage5_runs.json", "test3_runs.json", "test4_runs.json")]
    runs = tapas.synonym_rule_runs(*records)
    assert list(runs) == ["test2", "test3", "test4"]
    for (split, frame), record in zip(runs.items(), records):
        assert frame["keyword rule"].tolist() == record["runs"]["keyword rule"][split]
        new = frame["new theme"] == 1  # no new theme's header has a synonym: the rule answers them alike
        assert (frame.loc[new, "rule, training synonyms"] == frame.loc[new, "keyword rule"]).all()
    table = tapas.synonym_rule_table(runs)  # its numbers are the notebook's to read; here only its shape
    assert list(table.columns) == ["keyword rule", "rule, training synonyms", "shipped model"] and len(table) == 12
    panels = tapas.test_split_differences(*records, runs)
    assert len(panels) == 3 and list(panels)[2].endswith("rule + synonyms")
    frame = runs["test3"]
    trained = frame["new theme"] == 0
    by_hand = frame.loc[trained, "shipped model"].mean() - frame.loc[trained, "rule, training synonyms"].mean()
    assert list(panels.values())[2]["test3: training themes"].difference == pytest.approx(by_hand)
    broken = json.loads(json.dumps(records[1]))
    broken["runs"]["keyword rule"]["test3"][0] ^= 1
    with pytest.raises(ValueError, match="test3: generated again"):
        tapas.synonym_rule_runs(records[0], broken, records[2])
    broken["test3"] = "somewhere else"
    with pytest.raises(ValueError, match="does not name the generate_split call"):
        tapas.synonym_rule_runs(records[0], broken, records[2])


def test_run_restricted_answers_the_books_questions_as_pandas_does():
    frame = tapas.book_frame()
    for _, code in tapas.BOOK_QUESTIONS:
        assert tapas.run_restricted(code, frame) == tapas.run_pandas(code, frame)
    assert tapas.run_restricted("len(df)", frame) == 6
    assert tapas.run_restricted('df["number_of_pages"].mean()', frame) == 23


@pytest.mark.parametrize("code, reason", [
    ('__import__("os").system("echo hacked")', "not allowed"),
    ("df.__class__.__init__.__globals__", "'__globals__' is not allowed"),
    ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
    ('open("/etc/passwd").read()', "not allowed"),
    ('df.to_csv("/tmp/leak.csv")', "'to_csv' is not allowed"),
    ('df.eval("1 + 1")', "'eval' is not allowed"),
    ('df.query("number_of_pages > 20")', "'query' is not allowed"),
    ("[x for x in range(10)]", "ListComp is not allowed"),
    ("lambda: 0", "Lambda is not allowed"),
    ("import os", "not one Python expression"),
    ("x = 1", "not one Python expression"),
    ('"a" * 1000000000', "repeating a string"),
    ("str(df) * 1000000000000", "more than 1000"),
    ("df['name'].tolist() * 1000 * 1000", "more than 1000"),
    ("df['chapter'] ** 999999", "Pow is not allowed"),
    ("10 ** 10 ** 10", "Pow is not allowed"),
    ("123456789012345678", "too large"),
    ("os", "the name 'os' is not allowed"),
    ('exec("print(1)")', "not allowed"),
    ("df" + " + df" * 200, "at most 400"),
])
def test_run_restricted_refuses_hostile_code(code, reason):
    with pytest.raises(tapas.UnsafeCode, match=re.escape(reason)):
        tapas.run_restricted(code, tapas.book_frame())


def test_run_restricted_stops_at_the_time_limit(monkeypatch):
    import time

    slow = tapas.book_frame()
    monkeypatch.setitem(tapas._SAFE_FUNCTIONS, "len", lambda x: time.sleep(5))  # a call that never returns in time
    with pytest.raises(TimeoutError, match="longer than 0.2 s"):
        tapas.run_restricted("len(df)", slow, timeout=0.2)


def test_extract_expression_and_numeric_frame():
    assert tapas.extract_expression("```python\ndf['a'].sum()\n```\nThis sums a.") == "df['a'].sum()"
    assert tapas.extract_expression("len(df)\nbecause ...") == "len(df)"
    frame = tapas.numeric_frame(tapas.prepare_table(tapas.book_frame()))
    assert frame["number_of_pages"].sum() == 138 and frame["name"].iloc[4] == "Summarization"


# ---- reading the splits: header words, templates, row order, score text ---------------------------

def test_names_header_and_header_share():
    table = tapas.prepare_table(tapas.book_frame())
    example = lambda question, code: tapas.Example(table, question, "NONE", [], code, None, "lookup")  # noqa: E731
    assert tapas.names_header(example("What is the start page of Summarization?", 'df.loc[df["name"] == "x", "start_page"].item()'))
    assert not tapas.names_header(example("Which page opens Summarization?", 'df.loc[df["name"] == "x", "start_page"].item()'))
    assert tapas.names_header(example("How many chapters are there?", "len(df)")) is None
    share, n = tapas.header_share([example("Total pages?", 'df["number_of_pages"].sum()'),
                                   example("Total number of pages?", 'df["number_of_pages"].sum()'),
                                   example("How many chapters?", "len(df)")])
    assert (share, n) == (0.5, 2)


def test_closest_template_finds_the_template_a_question_follows():
    kind, template, follows, similarity = tapas.closest_template("What is the start page of Text classification?")
    assert (kind, template, follows) == ("lookup", "What is the {phrase} of {key}?", True)
    assert tapas.closest_template("What's the average number of pages?")[1:3] == ("What is the average {phrase}?", True)
    assert not tapas.closest_template("Which chapter starts on page 121?")[2]
    with pytest.raises(ValueError, match="non-empty str"):
        tapas.closest_template("  ")


def test_score_text_falls_back_to_wilson_at_the_ends():
    assert tapas.score_text(dict(right=30, asked=30, accuracy=1.0, low=1.0, high=1.0)) == "100% [89%, 100%]* of 30"
    assert tapas.score_text(dict(right=15, asked=30, accuracy=0.5, low=0.3, high=0.7)) == "50% [30%, 70%] of 30"


def test_summable_headers_follow_the_generator():
    labels = tapas.summable_headers(draws=10)
    assert labels["goals"] and labels["number_of_pages"] and not labels["start_page"] and not labels["year"]
    assert all(not labels[h] for h in tapas.DATES_AND_POSITIONS)


# --- weak against strong supervision, where lookups land -----------------------------------------


def test_weak_answer_finds_every_cell_that_holds_the_answer():
    questions, table = tapas.book_examples()
    example = tapas.Example(table=table, question=questions[3][0], aggregator="COUNT",
                            coordinates=[(1, 4), (2, 4), (3, 4)], pandas="", gold=3)
    cells, texts, number = tapas.weak_answer(example)
    assert cells == [(3, 0), (5, 4)] and texts == ["3", "3"] and number == 3.0  # chapter 3 and the 3-page chapter
    total = tapas.Example(table=table, question=questions[1][0], aggregator="SUM", coordinates=[], pandas="", gold=138)
    assert tapas.weak_answer(total) == ([], [], 138.0)
    text = tapas.Example(table=table, question=questions[0][0], aggregator="NONE", coordinates=[(4, 1)], pandas="",
                         gold="Summarization")
    cells, texts, number = tapas.weak_answer(text)
    assert cells == [(4, 1)] and texts == ["Summarization"] and math.isnan(number)


def test_encode_weak_and_collate_pad_numbers_as_the_tokenizer_does(tokenizer):
    import torch

    examples = tapas.generate_examples(2, seed=0)[:3]
    items = tapas.encode_examples(tokenizer, examples, supervision="weak")
    assert "aggregation_labels" not in items[0] and items[0]["float_answer"].dim() == 0
    batch = tapas.collate(items)
    for i, item in enumerate(items):
        n = item["input_ids"].shape[0]
        assert torch.isnan(batch["numeric_values"][i, n:]).all()
        assert (batch["numeric_values_scale"][i, n:] == 1).all()
    assert batch["float_answer"].tolist() == pytest.approx([tapas.weak_answer(e)[2] for e in examples], nan_ok=True)
    with pytest.raises(ValueError, match="supervision must be"):
        tapas.encode_examples(tokenizer, examples, supervision="answers")


def test_supervision_overview_reads_each_records_arms_by_kind_beside_the_references():
    examples = tapas.generate_examples(2, seed=0)[:4]
    kinds = [e.kind for e in examples]
    made = lambda arm, bits: dict(supervision=arm, seed=0, seconds=1.0, correct=bits)  # noqa: E731
    first = tapas.read_supervision_record(dict(command="x", kinds=kinds, tables=[0, 0, 0, 0],
                                               runs=[made("weak", "1000"), made("strong, WTQ temperature", "1111")]))
    second = tapas.read_supervision_record(dict(command="y", kinds=kinds, tables=[0, 0, 0, 0], runs=[made("weak", "0101")]))
    table = tapas.supervision_overview({"a": first, "b": second}, examples)
    assert list(table.columns) == ["a: strong, WTQ temperature", "a: weak", "b: weak", "keyword rule", "floor: COUNT of a column"]
    assert table.index[-1] == "all" and table.loc["all", "a: weak"] == 0.25 and table.loc["all", "b: weak"] == 0.5
    assert table.loc[kinds[0], "a: weak"] == 1.0 and table.loc["all", "a: strong, WTQ temperature"] == 1.0
    assert table.loc["all", "floor: COUNT of a column"] == tapas.row_count_floor(examples)
    with pytest.raises(ValueError, match="none of the records"):
        tapas.supervision_overview({"b": second}, examples, arms=("strong",))


def test_planned_comparisons_read_each_start_as_planned():
    kinds = ["sum", "count rows", "lookup", "average"]

    def record(steps=100, **arms):
        return dict(command="x", steps=steps, kinds=kinds, tables=[0, 0, 1, 1],
                    runs=[dict(supervision=arm, seed=seed, seconds=1.0, correct=flags)
                          for arm, by_seed in arms.items() for seed, flags in enumerate(by_seed)])

    records = {"from scratch": record(**{"weak": ["1000", "1100"], "strong, WTQ temperature": ["1111", "1111"]}),
               "from scratch, 1,000 steps": record(1000, **{"weak": ["0000", "0000"], "strong, WTQ temperature": ["1111", "1110"]}),
               "masked-LM encoder": record(**{"weak": ["0000", "0000"], "strong, WTQ temperature": ["1100", "1100"]}),
               "trained encoder": record(**{"weak": ["1110", "1111"], "strong, WTQ temperature": ["1111", "1111"]}),
               "trained encoder, no cutoff": record(**{"weak, no cutoff": ["1111", "1111"]})}
    records["masked-LM encoder"]["encoder_metrics"] = {"command": "python scripts/tapas_pretrain.py pretrain --init a --out b"}
    records["trained encoder"]["encoder"] = records["trained encoder, no cutoff"]["encoder"] = "data/tapas/small_tapas"
    lines = tapas.planned_summary(records)
    assert len(lines) == 5
    assert lines[0].startswith("  weak minus strong, WTQ temperature, 100 steps: -75.0, -50.0 points")
    assert lines[2].startswith("  weak, pre-trained minus weak, 100 steps, from a masked-language pre-trained encoder: -25.0, -50.0")
    assert lines[4].startswith("  weak, no cutoff minus weak, 100 steps, from a trained encoder: +25.0, +0.0")
    starts = tapas.supervision_starts(records)
    assert set(starts["masked-LM encoder, 100 steps"]["supervision"]) == {"weak", "weak, pre-trained", "strong, WTQ temperature, pre-trained"}
    with pytest.raises(ValueError, match="seeds 2 and 7"):
        tapas.load_supervision_records(eval_seed=3)


def test_answer_patterns_count_each_seeds_operators_and_empty_selections():
    kinds = ["sum", "count rows", "lookup", "average"]
    made = dict(command="x", kinds=kinds, tables=[0, 0, 1, 1], runs=[
        dict(supervision="weak", seed=0, seconds=1.0, correct="0100", operators="CCCC", cells="3 3 0 0"),
        dict(supervision="weak", seed=1, seconds=1.0, correct="0010", operators="NNNS", cells="0 0 1 2"),
        dict(supervision="strong", seed=0, seconds=1.0, correct="1111", operators="SCNA", cells="2 3 1 2")])
    table = tapas.answer_patterns({"made": tapas.read_supervision_record(made)})
    assert list(table.index) == [("made", 0), ("made", 1)]  # the weak arm only
    assert table.loc[("made", 0)].to_dict() == {"right": 0.25, "NONE": 0.0, "SUM": 0.0, "AVERAGE": 0.0, "COUNT": 1.0,
                                                "no cell": 0.5}
    assert table.loc[("made", 1), "NONE"] == 0.75 and table.loc[("made", 1), "no cell"] == 0.5
    old = dict(made, runs=[{k: v for k, v in run.items() if k not in ("operators", "cells")} for run in made["runs"]])
    with pytest.raises(ValueError, match="stores no operators"):
        tapas.answer_patterns({"old": tapas.read_supervision_record(old)})
    with pytest.raises(ValueError, match="arm"):
        tapas.answer_patterns({"made": tapas.read_supervision_record(made)}, arm="weak, no cutoff")


def test_fresh_model_keeps_a_trained_encoder_under_fresh_heads(tokenizer):
    import torch
    from transformers import TapasForQuestionAnswering

    torch.manual_seed(0)
    trained = TapasForQuestionAnswering(tapas.small_config(tokenizer.vocab_size, num_hidden_layers=1))
    with torch.no_grad():
        trained.output_weights.add_(1.0)  # heads no fresh model has
        trained.aggregation_classifier.weight.add_(1.0)
    model = tapas.fresh_model(tokenizer.vocab_size, tapas.WTQ_WEAK_SUPERVISION, encoder=trained)
    for name, value in trained.tapas.state_dict().items():
        assert torch.equal(model.tapas.state_dict()[name], value), name
    assert not torch.equal(model.output_weights, trained.output_weights)
    assert not torch.equal(model.aggregation_classifier.weight, trained.aggregation_classifier.weight)
    assert model.config.use_answer_as_supervision and not trained.config.use_answer_as_supervision
    assert model.config.num_hidden_layers == 1  # the encoder's own shape, not small_config's
    assert tapas.fresh_model(tokenizer.vocab_size, {}).config.num_hidden_layers == 2


def test_fresh_model_gives_a_bare_pre_trained_encoder_the_small_models_heads(tokenizer):
    """google/tapas-tiny is a TapasModel whose config has TapasConfig's defaults (no operator head): under
    fresh_model it gets the four WTQ operators of small_config and keeps every encoder weight, the pooler's too;
    the shipped checkpoint's head settings are left as they were (its records' commands still mean the same)."""
    import torch
    from transformers import TapasConfig, TapasForQuestionAnswering, TapasModel

    import utils

    bare = TapasModel(TapasConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64))
    assert bare.config.num_aggregation_labels == 0
    model = tapas.fresh_model(tokenizer.vocab_size, tapas.WTQ_WEAK_SUPERVISION, encoder=bare)
    assert model.config.num_aggregation_labels == 4 and model.config.aggregation_labels == tapas.AGGREGATION_LABELS
    assert model.config.use_answer_as_supervision and model.config.hidden_size == 32
    for name, value in bare.state_dict().items():
        assert torch.equal(model.tapas.state_dict()[name], value), name
    assert any(name.startswith("pooler.") for name in bare.state_dict())
    with pytest.raises(ValueError, match="vocabulary"):
        tapas.fresh_model(tokenizer.vocab_size + 1, {}, encoder=bare)
    shipped = TapasForQuestionAnswering.from_pretrained(utils.data_path("tapas", "small_tapas"))
    again = tapas.fresh_model(shipped.config.vocab_size, {}, encoder=shipped)
    assert {k: getattr(again.config, k) for k in tapas.HEAD_SETTINGS} == {k: getattr(shipped.config, k) for k in tapas.HEAD_SETTINGS}


def test_supervision_runs_from_a_bare_pre_trained_encoder(tokenizer):
    """The notebook's google/tapas-tiny cell: a loaded TapasModel with no operator head, both planned arms."""
    from transformers import TapasConfig, TapasModel

    bare = TapasModel(TapasConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64))
    examples = tapas.generate_examples(2, seed=0)
    runs = tapas.supervision_runs(tokenizer, examples, examples[:3], seeds=(0,), steps=2, batch_size=4,
                                  arms=("weak", "strong, WTQ temperature"), encoder=bare)
    assert sorted(set(runs["supervision"])) == ["strong, WTQ temperature", "weak"] and len(runs) == 6
    assert bare.config.num_aggregation_labels == 0  # the encoder given is left as it was


def test_supervision_runs_from_an_encoder_check_its_vocabulary(tokenizer, tmp_path):
    from transformers import TapasForQuestionAnswering

    TapasForQuestionAnswering(tapas.small_config(tokenizer.vocab_size + 1, num_hidden_layers=1)).save_pretrained(tmp_path)
    examples = tapas.generate_examples(1, seed=0)
    with pytest.raises(ValueError, match="vocabulary"):
        tapas.supervision_runs(tokenizer, examples, examples[:2], seeds=(0,), steps=1, arms=("weak",), encoder=tmp_path)


def test_supervision_runs_record_and_comparison(tokenizer):
    examples = tapas.generate_examples(2, seed=0)
    runs = tapas.supervision_runs(tokenizer, examples, examples[:4], seeds=(0, 1), steps=2, batch_size=4)
    assert len(runs) == 9 * 2 * 4 and set(runs["supervision"]) == set(tapas.SUPERVISION_ARMS)
    record = tapas.supervision_record(runs, command="python x", steps=2)
    assert record["command"] == "python x" and len(record["runs"]) == 18
    back = tapas.read_supervision_record(record)
    columns = ["supervision", "seed", "question", "kind", "table", "correct", "operator", "cells"]
    pd.testing.assert_frame_equal(back[columns], runs.sort_values(["supervision", "seed", "question"])[columns]
                                  .reset_index(drop=True), check_dtype=False)
    assert set(runs["operator"]) <= set(tapas.OPERATOR_LETTERS) and (runs["cells"] >= 0).all()
    with pytest.raises(ValueError, match="operators"):  # a record whose strings disagree in length is refused
        tapas.read_supervision_record(dict(record, runs=[dict(record["runs"][0], operators="N")]))
    # a made-up record where weak gets every question right and strong none: the difference is +100 points
    made = dict(command="x", kinds=["sum", "lookup", "sum", "lookup"], tables=[0, 0, 1, 2],
                runs=[dict(supervision=s, seed=k, seconds=1.0, correct=("1111" if s == "weak" else "0000"))
                      for s in ("strong", "weak") for k in (0, 1)])
    by_kind, paired, (points, over_seeds) = tapas.compare_supervision(tapas.read_supervision_record(made), b="strong")
    assert by_kind.loc["all", "weak"].tolist() == [1.0, 1.0] and by_kind.loc["sum", "strong"].tolist() == [0.0, 0.0]
    assert paired.difference == pytest.approx(1.0) and str(paired).startswith("+100")
    assert points == [100.0, 100.0] and over_seeds.value == pytest.approx(100.0)
    # seed by seed: +50 and -25 points; t interval of the mean, 1 degree of freedom (t = 12.706)
    uneven = dict(made, runs=[dict(supervision="weak", seed=0, seconds=1.0, correct="1100"),
                              dict(supervision="strong", seed=0, seconds=1.0, correct="0000"),
                              dict(supervision="weak", seed=1, seconds=1.0, correct="0100"),
                              dict(supervision="strong", seed=1, seconds=1.0, correct="1100")])
    _, _, (points, over_seeds) = tapas.compare_supervision(tapas.read_supervision_record(uneven), b="strong")
    assert points == [50.0, -25.0] and over_seeds.value == pytest.approx(12.5)
    rates = tapas.learning_rate_table({0.01: tapas.read_supervision_record(uneven), 0.001: tapas.read_supervision_record(made)},
                                      arms=("weak", "strong"))
    assert list(rates.columns) == ["lr 0.001", "lr 0.01"]
    assert rates.loc["weak", "lr 0.01"] == "37.5% (25.0% to 50.0%)" and rates.loc["strong", "lr 0.001"] == "0.0% (0.0% to 0.0%)"
    with pytest.raises(ValueError, match="no runs"):
        tapas.learning_rate_table({0.01: tapas.read_supervision_record(made)})
    line, = tapas.supervision_summary([(tapas.read_supervision_record(uneven), dict(uneven, steps=7), ("weak", "strong"))])
    assert line.startswith("  weak minus strong, 7 steps: +50.0, -25.0 points; mean 12.5")
    for extra, start in [(dict(encoder="x"), "from a trained encoder"),
                         (dict(encoder="x", encoder_metrics={"command": "python scripts/tapas_pretrain.py pretrain --init a"}),
                          "from a masked-language pre-trained encoder")]:
        line, = tapas.supervision_summary([(tapas.read_supervision_record(uneven), dict(uneven, steps=7, **extra), ("weak", "strong"))])
        assert line.startswith(f"  weak minus strong, 7 steps, {start}: +50.0")
    assert over_seeds.high - over_seeds.value == pytest.approx(12.706 * 75 / 2 ** 0.5 / 2 ** 0.5, rel=1e-3)
    with pytest.raises(ValueError, match="needs runs"):
        tapas.compare_supervision(tapas.read_supervision_record(made))  # no 'strong, WTQ temperature' arm
    with pytest.raises(ValueError, match="outcomes"):
        tapas.read_supervision_record(dict(made, kinds=["sum"]))


def test_supervision_lines_and_by_kind_put_the_references_beside_the_arms():
    pool = tapas.generate_examples(4, seed=0)
    ids = tapas.table_ids(pool)
    examples = [pool[ids.index(k)] for k in range(4)]  # the first question of each of four tables
    # weak right on every question in both seeds, strong on the first two in seed 0 and none in seed 1
    made = dict(command="x", kinds=[e.kind for e in examples], tables=tapas.table_ids(examples),
                runs=[dict(supervision="weak", seed=k, seconds=1.0, correct="1111") for k in (0, 1)]
                + [dict(supervision="strong", seed=0, seconds=1.0, correct="1100"),
                   dict(supervision="strong", seed=1, seconds=1.0, correct="0000")])
    runs = tapas.read_supervision_record(made)
    floor = sum(str(e.gold) == str(len(e.table)) for e in examples) / len(examples)
    assert tapas.row_count_floor(examples) == pytest.approx(floor)
    assert tapas.row_count_floor([e for e in pool if e.kind == "count rows"]) == 1.0  # their answer is the row count
    assert tapas.row_count_floor([e for e in pool if e.kind == "lookup by id"]) == 0.0  # names are no counts
    rule = tapas.evaluate_rule(examples)
    lines = tapas.supervision_lines(runs, examples, [("weak", "strong")])
    assert f" {floor:.1%}, the share" in lines[0] and lines[1].split()[2] == f"{rule['correct'].mean():.1%},"
    assert lines[2].split()[1] == "25.0%" and lines[3].split()[1] == "100.0%"  # strong, then weak: the arms' order
    assert lines[4] == "weak - strong:" and "+75.0 points" in lines[5] and lines[6].startswith("  seed by seed: +50.0, +100.0")
    assert tapas.supervision_lines(runs, examples, [], references=False) == lines[2:4]
    assert tapas.supervision_lines(runs, examples, [], references=False, arms=["weak"]) == lines[3:4]
    renamed = pd.concat([runs, runs[runs["supervision"] == "weak"].assign(supervision="weak, from a much longer start name")])
    shown = tapas.supervision_lines(renamed, examples, [("weak, from a much longer start name", "weak")], references=False,
                                    arms=["weak, from a much longer start name", "weak"])
    assert [line.split(" 100.0%")[0].strip() for line in shown[:2]] == ["weak", "weak, from a much longer start name"]
    assert shown[0].index("100.0%") == shown[1].index("100.0%")  # one column, however long the names
    by_kind = tapas.supervision_by_kind(runs, examples)
    assert list(by_kind.columns) == ["strong", "weak", "keyword rule"]
    assert by_kind.loc["all", "weak"] == 1.0 and by_kind.loc["all", "strong"] == 0.25
    assert by_kind.loc["all", "keyword rule"] == pytest.approx(rule["correct"].mean())
    with pytest.raises(ValueError, match="scored on 4 questions, 3 examples"):
        tapas.supervision_lines(runs, examples[:3], [])
    with pytest.raises(ValueError, match="no example"):
        tapas.row_count_floor([])


def test_test3_results_follow_the_plan():
    kinds = ["lookup", "sum"] * 6
    new, tables = [1] * 6 + [0] * 6, [i // 2 for i in range(12)]
    shipped = [0, 1] * 6
    runs = {"as shipped": shipped, "redrawn, draw 0": [1, 1] * 6, "redrawn, draw 1": [1, 1] * 3 + [0, 1] * 3,
            "redrawn, draw 2": [0, 1] * 6, "rescaled": shipped, "stage 4": [0] * 12,
            **{f"stage 4, redrawn, draw {k}": [0] * 12 for k in range(3)}, "keyword rule": [1] * 12}
    record = {"questions": {"kind": kinds, "theme": ["t"] * 12, "table": tables, "new theme": new},
              "runs": {name: {"test3": a} for name, a in runs.items()}}
    scores, compared = tapas.test3_results(record)
    assert list(scores.columns) == ["test3", "test3, new themes", "test3, training themes", "test3, new-theme lookups"]
    assert scores.loc["as shipped", "test3, new-theme lookups"].startswith("0% ")
    assert scores.loc["redrawn, draw 1", "test3, new-theme lookups"].startswith("100% ")
    # on the new themes' lookups draws 0 and 1 are right and draw 2 wrong: each question's share is 2/3
    planned = compared["test3, new-theme lookups: redrawn, draws 0-2 - as shipped"]
    assert planned.difference == pytest.approx(2 / 3)
    # on the training themes only draw 0 gets the lookups (half the questions): 1/3 of a question each, 1/6 overall
    assert compared["test3, training themes: redrawn, draws 0-2 - as shipped"].difference == pytest.approx(1 / 6)
    assert compared["test3: rescaled - as shipped"].difference == 0
    assert len(compared) == len(tapas.TEST3_PLANNED) * 4
    lines = tapas.test3_lines(record)
    assert len(lines) == 4 and "redrawn 100%, 100%, 0%" in lines[3] and "keyword rule 100%" in lines[3]
    del record["runs"]["redrawn, draw 1"], record["runs"]["redrawn, draw 2"]
    with pytest.raises(ValueError, match="has 1 runs for 'redrawn, draws 0-2'"):
        tapas.test3_results(record)


def test_test4_results_pool_the_seeds_of_each_procedure():
    kinds, new, tables = ["lookup", "sum"] * 6, [1] * 6 + [0] * 6, [i // 2 for i in range(12)]
    runs = {"no pre-training, seed 0": [0, 1] * 6, "no pre-training, seed 1": [0, 0] * 6,
            "pre-trained, seed 0": [1, 1] * 6, "pre-trained, seed 1": [1, 0] * 6,
            **{f"no pre-training, seed 0, redrawn, draw {k}": [0, 1] * 6 for k in range(3)}, "keyword rule": [1] * 12}
    record = {"questions": {"kind": kinds, "theme": ["t"] * 12, "table": tables, "new theme": new},
              "runs": {name: {"test4": a} for name, a in runs.items()}}
    scores, compared = tapas.test4_results(record)
    assert scores.loc["pre-trained, seed 0", "test4"].startswith("100% ")
    # lookups: pre-trained right in both seeds, not pre-trained in neither: +100 points; sums: 1/2 against 1/2
    assert compared["test4, new-theme lookups: pre-trained, seeds 0-1 - no pre-training, seeds 0-1"].difference == 1.0
    assert compared["test4: pre-trained, seeds 0-1 - no pre-training, seeds 0-1"].difference == pytest.approx(0.5)
    assert compared["test4: pre-trained, seed 1 - no pre-training, seed 1"].difference == pytest.approx(0.5)
    lines = tapas.test4_lines(record)
    assert len(lines) == 4 and "no pre-training 0%, 0%; pre-trained 100%, 100%" in lines[3]


def test_shipped_third_test_record_is_of_the_pinned_split():
    import json

    import utils

    record = json.loads(utils.data_path("tapas", "test3_runs.json").read_text())
    examples = tapas.generate_split("test3", tapas.TEST3_TABLES)
    assert record["test3"].endswith("cff9f2809e8dd21a9c0ab932ca99dd4bfb7efbcd786dd5cc1c1ee8af9ba24e3c")
    assert record["questions"]["kind"] == [e.kind for e in examples]
    assert record["command"] == "python scripts/tapas_test3.py --stage4 /tmp/stage4"
    assert all(len(run["test3"]) == len(examples) for run in record["runs"].values())
    rule = tapas.evaluate_rule(examples)["correct"].astype(int).tolist()
    assert record["runs"]["keyword rule"]["test3"] == rule  # the rule needs no model: the record repeats today


def test_selection_outcome_and_crosstab_with_a_stand_in_pipeline():
    questions, table = tapas.book_examples()
    lookup = tapas.Example(table=table, question="What is the start page of Summarization?", aggregator="NONE",
                           coordinates=[(4, 2)], pandas="", gold=121, kind="lookup")
    replies = [{"coordinates": [(4, 2)], "cells": ["121"], "aggregator": "NONE"},  # right
               {"coordinates": [(3, 2)], "cells": ["74"], "aggregator": "NONE"},  # right column, wrong row
               {"coordinates": [(4, 3)], "cells": ["140"], "aggregator": "NONE"},  # wrong column
               {"coordinates": [(4, 2), (3, 2)], "cells": ["121", "74"], "aggregator": "NONE"},  # two cells
               {"coordinates": [], "cells": [], "aggregator": "NONE"},  # nothing
               {"coordinates": [(4, 2)], "cells": ["121"], "aggregator": "COUNT"}]  # an operator
    answers = iter(replies)
    outcome = tapas.selection_outcome(lambda table, query: next(answers), [lookup] * len(replies))
    assert outcome["answered"].tolist() == ["one cell", "one cell", "one cell", "several cells", "no cell", "COUNT"]
    assert outcome["column"].tolist() == ["right", "right", "wrong", "right", "none", "right"]
    assert outcome["row"].tolist() == ["right", "wrong", "right", "wrong", "none", "right"]
    assert outcome["correct"].tolist() == [True, False, False, False, False, False]
    assert not outcome["gold_value_repeats"].any()
    counts = tapas.selection_crosstab(outcome)
    assert counts.loc[("right column", "right row"), "answered right"] == 1
    assert counts.loc[("right column", "wrong row"), "answered wrong"] == 2
    assert counts.loc[("all", ""), "all"] == len(replies)
    repeated = tapas.Example(table=table, question="?", aggregator="NONE", coordinates=[(3, 0)], pandas="", gold=3)
    again = tapas.selection_outcome(lambda table, query: replies[0], [repeated])
    assert again["gold_value_repeats"].tolist() == [False]  # 3 is in column 0 once (and once in column 4)


def test_kept_answers_with_the_shipped_model():
    from transformers import TapasForQuestionAnswering, TapasTokenizer

    from utils import data_path

    folder = data_path("tapas", "small_tapas")
    questions, table = tapas.book_examples()
    weak = TapasForQuestionAnswering.from_pretrained(folder, **tapas.WTQ_WEAK_SUPERVISION)
    kept = tapas.kept_answers(weak, TapasTokenizer.from_pretrained(folder), table, questions[1][0], range(120, 160))
    delta, cutoff = tapas.WTQ_WEAK_SUPERVISION["huber_loss_delta"], tapas.WTQ_WEAK_SUPERVISION["answer_loss_cutoff"]
    assert 138 in kept and max(kept) - min(kept) <= 2 * (cutoff / delta + delta / 2) + 1  # a window around 138
    with pytest.raises(ValueError, match="weak supervision"):
        tapas.kept_answers(TapasForQuestionAnswering.from_pretrained(folder), None, table, "?", [1])


def test_cutoff_drops_counts_the_questions_the_weak_loss_drops(tokenizer):
    examples = tapas.generate_examples(6, seed=1)
    drops = tapas.cutoff_drops(tokenizer, examples, seeds=(0, 1))
    assert drops.loc["all", "questions"] == len(examples)
    assert drops.drop(index="all").sum().tolist() == drops.loc["all"].tolist()
    assert (drops["dropped"] <= drops["aggregated"]).all() and (drops["aggregated"] <= drops["questions"]).all()
    assert drops.loc["lookup by id", "aggregated"] == 0  # a text answer is selected, never aggregated
    # a fresh model's expected result lies near 0: totals in the tens and more are out of the cutoff's reach
    assert drops.loc["sum", "dropped"] == drops.loc["sum", "questions"]
    with pytest.raises(ValueError, match="no example"):
        tapas.cutoff_drops(tokenizer, [])
    encoded = tapas.encode_examples(tokenizer, examples, supervision="weak")  # encoded once, read as if encoded inside
    pd.testing.assert_frame_equal(tapas.cutoff_drops(tokenizer, examples, seeds=(0, 1), encoded=encoded), drops)
    with pytest.raises(ValueError, match="encoded questions"):
        tapas.cutoff_drops(tokenizer, examples, encoded=encoded[:2])


def test_masked_lm_collate_masks_as_bert_does_and_a_fresh_model_guesses_uniformly():
    import math

    import torch
    from transformers import TapasForMaskedLM, TapasTokenizer

    import utils

    tokenizer = TapasTokenizer.from_pretrained(utils.data_path("tapas", "small_tapas"))
    examples = tapas.generate_split("train", 40)
    items = tapas.encode_examples(tokenizer, examples)
    batch = tapas.masked_lm_collate(tokenizer, seed=0)(items)
    torch.manual_seed(123)  # the global random state must not matter: the seed alone decides the masking
    again = tapas.masked_lm_collate(tokenizer, seed=0)(items)
    assert torch.equal(batch["labels"], again["labels"]) and torch.equal(batch["input_ids"], again["input_ids"])
    assert not torch.equal(tapas.masked_lm_collate(tokenizer, seed=1)(items)["labels"], batch["labels"])
    plain = tapas.collate(items)
    chosen = batch["labels"] != -100
    special = torch.isin(plain["input_ids"], torch.tensor(tokenizer.all_special_ids))
    assert not (chosen & special).any()  # no [CLS], [SEP] or padding is ever a target
    assert torch.equal(batch["labels"][chosen], plain["input_ids"][chosen])  # the target is the original piece
    share = chosen.sum().item() / (~special).sum().item()
    assert 0.12 < share < 0.18
    replaced = batch["input_ids"][chosen]
    assert 0.72 < (replaced == tokenizer.mask_token_id).float().mean().item() < 0.88  # 80% [MASK]
    assert torch.equal(batch["input_ids"][~chosen], plain["input_ids"][~chosen])
    torch.manual_seed(0)
    model = TapasForMaskedLM(tapas.small_config(tokenizer.vocab_size)).eval()
    with torch.no_grad():
        out = model(**batch)
    by_hand = torch.nn.functional.cross_entropy(out.logits[chosen], batch["labels"][chosen])
    assert abs(out.loss.item() - by_hand.item()) < 1e-5
    assert abs(out.loss.item() - math.log(tokenizer.vocab_size)) < 0.3  # a fresh model is close to a uniform guess
    with pytest.raises(ValueError, match="rate"):
        tapas.masked_lm_collate(tokenizer, rate=1.5)


def _record(answers, kinds, new, tables):
    return {"questions": {"kind": kinds, "theme": ["t"] * len(kinds), "table": tables, "new theme": new},
            "runs": {name: {"test2": a, **({"validation": 0.5, "chosen_step": 500} if name.startswith("stage 5") else {})}
                     for name, a in answers.items()}}


def test_seed_runs_and_comparisons_on_a_record():
    kinds = ["lookup", "sum", "lookup", "sum"] * 5
    new = [1, 1, 0, 0] * 5
    tables = [i // 2 for i in range(20)]
    shipped = [0, 1, 1, 1] * 5
    seeds = {f"stage 5, seed {s}": [1, 1, 1, 1] * 5 if s else [1, 0, 1, 1] * 5 for s in range(3)}
    record = _record({"stage 4": shipped, **seeds, "keyword rule": [1, 0, 0, 0] * 5}, kinds, new, tables)
    table = tapas.seed_runs(record)
    assert list(table.index) == ["stage 4", "stage 5, seed 0", "stage 5, seed 1", "stage 5, seed 2", "keyword rule"]
    assert table.loc["stage 4", "test2, new-theme lookups"].startswith("0% ")
    assert table.loc["stage 5, seed 1", "test2"].startswith("100% ") and table.loc["keyword rule", "chosen step"] == "-"
    compared = tapas.seed_comparisons(record)
    summary, versus = compared["test2, new-theme lookups"]
    assert summary.values == (1.0, 1.0, 1.0) and versus["stage 5, seed 0"].difference == pytest.approx(1.0)
    summary, versus = compared["test2"]
    assert summary.mean == pytest.approx((0.75 + 1 + 1) / 3)
    assert versus["stage 5, seed 0"].difference == pytest.approx(0.0)
    assert versus["mean over the seeds"].difference == pytest.approx((0.75 + 1 + 1) / 3 - 0.75)
    with pytest.raises(ValueError, match="at least two"):
        tapas.seed_comparisons(_record({"stage 4": shipped}, kinds, new, tables))
    lines = tapas.test2_lines(record)
    assert len(lines) == len(tapas.TEST2_PARTS) and lines[0].split()[0] == "test2"
    assert lines[0].split()[1] == table.loc["stage 5, seed 0", "test2"].split()[0] == "75%"
    assert "stage 4 75%; keyword rule 25%" in lines[0] and "over 3 seeds" in lines[0]


def test_schema_words_of_the_test_themes():
    # the held-out, validation and first test themes' words are kept out of the random schemas; the second test's are not
    for themes in (tapas.HELD_OUT_THEMES, tapas.VALIDATION_THEMES, tapas.TEST_THEMES):
        assert tapas.schema_words_of(themes) == []
    leaked = tapas.schema_words_of(tapas.TEST2_THEMES)
    assert {"park", "journey", "carriages"} <= set(leaked) and "lighthouse" not in leaked
    with pytest.raises(ValueError, match="no theme 'moon'"):
        tapas.schema_words_of(["moon"])


def test_renamed_lookup_swaps_header_and_name_in_table_and_question():
    examples = [e for e in tapas.generate_split("unseen themes", 30) if e.kind == "lookup"]
    for e in examples:
        both = tapas.renamed_lookup(e, header="pages", name="Ana Silva")
        assert both.gold == e.gold and both.answer_text == e.answer_text  # the answer cell is untouched
        assert "pages" in both.question and "Ana Silva" in both.question
        assert list(both.table.columns).count("pages") == 1 and (both.table == "Ana Silva").sum().sum() == 1
        assert e.question != both.question and "Ana Silva" not in e.question  # the original is not changed
    planet = next(e for e in examples if e.question == "The width of kepler minor?")
    renamed = tapas.renamed_lookup(planet, header="pages", name="Ana Silva")
    assert renamed.question == "The pages of Ana Silva?" and "diameter_km" not in renamed.table.columns
    assert tapas.renamed_lookup(planet, name="Ana Silva").question == "The width of Ana Silva?"
    with pytest.raises(ValueError, match="not a lookup"):
        tapas.renamed_lookup(next(e for e in tapas.generate_split("unseen themes", 5) if e.kind == "sum"), header="pages")


def test_renamed_variants_swap_in_training_headers_chosen_by_the_gold_cell():
    training_headers = {h for e in tapas.generate_split("train", 300) for h in e.table.columns}
    assert {"pages", "genre"} <= training_headers  # the default swaps are words the model trained on
    lookups = [e for e in tapas.generate_split("unseen themes", 30) if e.kind == "lookup"]
    variants = tapas.renamed_variants(lookups)
    assert list(variants) == ["as generated", "training header", "training-style name", "both", "both, with decoys",
                             "random-schema words"]
    assert variants["as generated"] == lookups and all(len(v) == len(lookups) for v in variants.values())
    for e, h, both in zip(lookups, variants["training header"], variants["both"]):
        (row, col), = e.coordinates
        expected = "pages" if tapas._is_number(e.table.iat[row, col]) else "genre"
        assert h.table.columns[col] == both.table.columns[col] == expected
        assert both.table.iat[row, col] == e.table.iat[row, col] and "Ana Silva" in both.question
    for both, decoyed in zip(variants["both"], variants["both, with decoys"]):
        (row, col), = both.coordinates
        assert decoyed.question == both.question and decoyed.table.iat[row, col] == both.table.iat[row, col]
        changed = [c for c in both.table.columns if c not in decoyed.table.columns]
        assert len(changed) == 1 and set(decoyed.table.columns) & {"seats", "cuisine"}  # one column renamed
        assert (decoyed.table == "Ben Meyer").sum().sum() == 1 and (decoyed.table == "Ana Silva").sum().sum() == 1


def test_never_trained_words_are_whole_tokens_that_no_training_question_or_table_holds():
    from transformers import TapasTokenizer

    from utils import data_path

    shipped = TapasTokenizer.from_pretrained(data_path("tapas", "small_tapas"))
    words = tapas.never_trained_words(shipped)
    assert len(words) == 16 and all(shipped.tokenize(w) == [w] for w in words)
    seen = set()
    for e in tapas.generate_split("train", 400) + tapas.broad_lookups(200, seed=3):
        text = " ".join([e.question, *map(str, e.table.columns), *e.table.astype(str).to_numpy().ravel()])
        seen |= set(re.findall(r"[a-z]+", text.lower()))
    assert not seen & set(words)
    assert {"abode", "abroad", "absolutely", "accent"} <= set(tapas.schema_words())  # the schema variant's words
    variants = tapas.renamed_variants([e for e in tapas.generate_split("unseen themes", 10) if e.kind == "lookup"],
                                      never_trained=words[:8])
    assert list(variants)[-3:] == ["random-schema words", "never-trained words 1", "never-trained words 2"]
    assert all(words[2].title() in e.question for e in variants["never-trained words 1"])
    decoyed = tapas.renamed_variants(variants["as generated"], never_trained=words[:8], never_trained_decoys=True)
    for plain, with_decoys in zip(decoyed["never-trained words 1"], decoyed["never-trained words 1, with decoys"]):
        assert with_decoys.question == plain.question
        assert (with_decoys.table == f"{words[6].title()} {words[7].title()}").sum().sum() == 1  # the next set's name
        assert {words[4], words[5]} & set(with_decoys.table.columns)  # and one of its headers
    with pytest.raises(ValueError, match="fours"):
        tapas.renamed_variants([], never_trained=words[:3])


def test_where_it_looks_reads_the_selected_column_and_the_gold_row():
    from transformers import TapasForQuestionAnswering, TapasTokenizer

    from utils import data_path

    folder = data_path("tapas", "small_tapas")
    model, tokenizer = TapasForQuestionAnswering.from_pretrained(folder), TapasTokenizer.from_pretrained(folder)
    e = next(e for e in tapas.generate_split("unseen themes", 30) if e.question == "The width of kepler minor?")
    probabilities, _ = tapas._cell_probabilities(model, tokenizer, e.table, e.question)
    column = int(probabilities.max(axis=0).argmax())
    line = tapas.where_it_looks(model, tokenizer, e)
    assert line.startswith(f"gold column 'diameter_km', selected {e.table.columns[column]!r}")
    assert line.endswith(f"Kepler Minor, has {probabilities[1, column]:.2f}") and e.coordinates == [(1, 3)]


def test_untrained_rows_share_and_redrawn_rows():
    import torch
    from transformers import TapasForQuestionAnswering, TapasTokenizer

    from utils import data_path

    torch.manual_seed(0)
    model = TapasForQuestionAnswering(tapas.small_config(50))
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        weight[:20] *= 3  # "trained": grown past the initialiser's norm
        weight[:20] += torch.linspace(-1, 1, 128)  # and away from its mean
        weight[:20] += torch.linspace(-2, 2, 20)[:, None] * torch.linspace(-1, 1, 128)  # spread along one direction
    untrained = tapas.untrained_rows(model)
    assert untrained[20:].all() and not untrained[:20].any()
    before = weight.detach().clone()
    redrawn = tapas.with_redrawn_rows(model, untrained, seed=0)
    new = redrawn.get_input_embeddings().weight.detach()
    assert torch.equal(new[:20], before[:20]) and torch.equal(weight.detach(), before)  # a copy; trained rows kept
    assert (new[20:] - before[:20].mean(0)).norm(dim=1).mean() < (before[20:] - before[:20].mean(0)).norm(dim=1).mean()
    again = tapas.with_redrawn_rows(model, untrained, seed=0).get_input_embeddings().weight.detach()
    assert torch.equal(again, new)  # the seed fixes the draw
    rescaled = tapas.with_redrawn_rows(model, untrained, how="rescaled").get_input_embeddings().weight.detach()
    assert rescaled[20:].norm(dim=1) == pytest.approx(before[:20].norm(dim=1).median().item(), rel=1e-5)
    cosine = torch.nn.functional.cosine_similarity(rescaled[20:], before[20:])
    assert cosine.min() > 0.9999  # same directions
    # isotropic: the trained rows' mean and total variance, no preferred direction (the trained rows spread most
    # along linspace(-1, 1), and so does the redraw; the isotropic draw does not)
    isotropic = tapas.with_redrawn_rows(model, untrained, how="isotropic").get_input_embeddings().weight.detach()
    trained_var = torch.cov(before[:20].T).trace()
    spread = isotropic[20:] - before[:20].mean(0)
    assert spread.pow(2).sum(1).mean() == pytest.approx(trained_var.item(), rel=0.35)
    direction = torch.linspace(-1, 1, 128) / torch.linspace(-1, 1, 128).norm()
    along = lambda rows: ((rows - before[:20].mean(0)) @ direction).pow(2).mean() / (rows - before[:20].mean(0)).pow(2).sum(1).mean()  # noqa: E731
    assert along(isotropic[20:]) < 0.05 < along(new[20:])
    at_mean = tapas.with_redrawn_rows(model, untrained, how="mean").get_input_embeddings().weight.detach()
    assert torch.allclose(at_mean[20:], before[:20].mean(0).expand(30, -1))  # every untrained row the same vector
    with pytest.raises(ValueError, match="how must be"):
        tapas.with_redrawn_rows(model, untrained, how="zeros")
    # on the shipped model: the in-template split's pieces are trained rows, the unseen themes' often not
    folder = data_path("tapas", "small_tapas")
    shipped = TapasForQuestionAnswering.from_pretrained(folder)
    tokenizer = TapasTokenizer.from_pretrained(folder)
    rows = tapas.untrained_rows(shipped)
    in_template = tapas.untrained_share(tokenizer, tapas.generate_split("in template", 5), rows)
    unseen = tapas.untrained_share(tokenizer, tapas.generate_split("unseen themes", 5), rows)
    assert in_template["word pieces"] < 0.02 < 0.3 < unseen["word pieces"]
    assert not rows[tokenizer.convert_tokens_to_ids(["pages", "genre", "seats", "abode"])].any()
    assert rows[tokenizer.convert_tokens_to_ids(tapas.never_trained_words(tokenizer))].all()


def test_redrawn_rows_scores_asks_every_set_of_every_model():
    import torch
    from transformers import TapasForQuestionAnswering, TapasTokenizer

    from utils import data_path

    folder = data_path("tapas", "small_tapas")
    model, tokenizer = TapasForQuestionAnswering.from_pretrained(folder), TapasTokenizer.from_pretrained(folder)
    lookups = [e for e in tapas.generate_split("unseen themes", 6) if e.kind == "lookup"]
    before = model.get_input_embeddings().weight.detach().clone()
    never, groups = tapas.never_trained_lookups(lookups[:2], tokenizer)
    assert {name: len(q) for name, q in never.items()} == {"never-trained words": 8, "the same, with never-trained decoys": 8}
    assert groups["never-trained words"] == tapas.table_ids(lookups[:2]) * 4
    sets = {"lookups": lookups, "never-trained words": never["never-trained words"]}
    with pytest.raises(ValueError, match="2 group ids for 8 questions"):
        tapas.redrawn_rows_scores(model, tokenizer, tapas.untrained_rows(model), sets, groups={"never-trained words": [0, 1]})
    scores, paired = tapas.redrawn_rows_scores(model, tokenizer, tapas.untrained_rows(model), sets, draws=2,
                                               groups={"never-trained words": groups["never-trained words"]})
    edited = ["untrained rows at the trained mean", "untrained rows drawn isotropically",
              "untrained rows drawn like trained ones, draw 0", "untrained rows drawn like trained ones, draw 1"]
    assert list(scores.index) == ["as shipped", *edited] and list(paired.index) == edited
    assert list(scores.columns) == list(paired.columns) == [f"lookups ({len(lookups)})", "never-trained words (8)"]
    shipped = tapas.evaluate(pipeline_of(model, tokenizer), lookups)["correct"].mean()
    assert scores.iloc[0, 0] == pytest.approx(shipped)
    for name in edited:  # the paired difference is the difference of the shares, in points
        for column in scores.columns:
            points = int(paired.loc[name, column].split(" ")[0])
            assert points == round(100 * (scores.loc[name, column] - scores.loc["as shipped", column]))
    assert torch.equal(model.get_input_embeddings().weight.detach(), before)  # the edits are on copies


def pipeline_of(model, tokenizer):
    from transformers import pipeline

    return pipeline("table-question-answering", model=model, tokenizer=tokenizer)


def test_shown_command_hides_the_training_machines_folders():
    command = "python scripts/tapas_seeds.py --stage4 /tmp/stage4 /tmp/stage5/seed0 --out data/tapas/x.json"
    assert tapas.shown_command(command) == "python scripts/tapas_seeds.py --stage4 <stage 4> <stage 5/seed0> --out data/tapas/x.json"
    assert tapas.shown_command("x --out /tmp/stage4_mlm /tmp/stage5_mlm/seed1") == "x --out <stage 4, pre-trained> <stage 5, pre-trained/seed1>"


def test_test_split_differences_take_each_splits_own_comparison_and_the_rule():
    import json

    from utils import data_path

    records = [json.loads(data_path("tapas", name).read_text()) for name in ("stage5_runs.json", "test3_runs.json", "test4_runs.json")]
    written_for, against_rule = tapas.test_split_differences(*records).values()
    assert list(written_for) == list(against_rule) and len(written_for) == 12
    test3 = tapas.test3_results(records[1])[1]
    assert written_for["test3: new-theme lookups"].difference == test3["test3, new-theme lookups: redrawn, draws 0-2 - as shipped"].difference
    # the shipped model minus the rule on test4's new themes, counted from the record by hand
    record = records[2]
    new = [bool(n) for n in record["questions"]["new theme"]]
    shipped, rule = (record["runs"][name]["test4"] for name in ("no pre-training, seed 0", "keyword rule"))
    by_hand = (sum(s for s, n in zip(shipped, new) if n) - sum(r for r, n in zip(rule, new) if n)) / sum(new)
    assert against_rule["test4: new themes"].difference == pytest.approx(by_hand)
    assert against_rule["test2 (no plan): whole split"].difference == tapas.seed_comparisons(records[0], against="keyword rule")["test2"][1]["stage 5, seed 0"].difference


def test_novel_chapters_count_the_shipped_text():
    import re

    from utils import data_path

    frame = tapas.novel_chapters()
    assert list(frame.columns) == ["chapter", "opening", "words", "paragraphs", "mentions_of_elizabeth",
                                   "mentions_of_darcy", "mentions_of_bingley"]
    assert frame["chapter"].tolist() == list(range(1, 9)) and frame["opening"][0] == "It is a truth"
    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    second = text[text.index("\nChapter 2\n") + len("\nChapter 2\n"):text.index("\nChapter 3\n")]  # sliced another way
    assert frame.loc[1, "words"] == len(re.findall(r"[A-Za-z']+", second))
    assert frame.loc[1, "mentions_of_bingley"] == second.count("Bingley")
    assert frame.loc[1, "paragraphs"] == len([b for b in second.strip().split("\n\n") if b.strip()])
    examples = tapas.novel_examples()
    assert len(examples) == len(tapas.NOVEL_QUESTIONS) == 12
    golds = {e.question: e.gold for e in examples}
    assert golds["Which chapter opens with the words It is a truth?"] == 1
    assert golds["How many chapters does the table list?"] == 8
    assert golds["How many words do these chapters have in all?"] == frame["words"].sum()
    for e in examples:  # every count with a condition separates the chapters: neither none nor all
        if e.kind == "count with condition":
            assert 0 < e.gold < 8
    with pytest.raises(ValueError, match="61 chapters"):
        tapas.novel_chapters(0)


def test_ask_model_directly_takes_the_reply_as_the_answer():
    frame = tapas.book_frame()
    seen = []

    def generate(messages, **kwargs):
        seen.append(messages)
        return [{"generated_text": [*messages, {"role": "assistant", "content": " 138.\nThe pages add up to 138."}]}]

    row = tapas.ask_model_directly(generate, frame, "What is the total number of pages?", 138)
    assert row["executed"] == "138" and row["correct"] and row["code"] == ""
    assert "Summarization" in seen[0][1]["content"] and "answer only" in seen[0][0]["content"]
    wrong = tapas.ask_model_directly(lambda m, **k: [{"generated_text": [{"content": "Chapter four"}]}], frame, "x", "Summarization")
    assert not wrong["correct"]
    empty = tapas.ask_model_directly(lambda m, **k: [{"generated_text": [{"content": "  "}]}], frame, "x", 3)
    assert empty["problem"] == "empty reply" and not empty["correct"]


def test_truncation_report_counts_trimmed_cells_and_dropped_rows(tokenizer):
    frame = pd.DataFrame({"name": ["alpha beta gamma delta epsilon"] * 30, "pages": [str(10 + i) for i in range(30)]})
    report = tapas.truncation_report(tokenizer, frame, "How many pages in all?", max_length=128)
    assert report["tokens_kept"] <= 128 < report["tokens_all"]
    assert 0 < report["rows_kept"] < 30 and report["cells_kept"] == 2 * report["rows_kept"]
    # the names are cut to fewer pieces before rows are dropped; the two-piece page numbers are not
    assert report["cells_trimmed"] >= report["rows_kept"]
    assert report["pieces_per_cell"] < 5  # "alpha beta gamma delta epsilon" is at least five pieces
    untouched = tapas.truncation_report(tokenizer, frame.head(2), "How many pages in all?")
    assert untouched["cells_trimmed"] == 0 and untouched["rows_kept"] == 2 and untouched["tokens_kept"] == untouched["tokens_all"]


# --- TabFact and TAPEX ----------------------------------------------------------------------


SMALL_TABLE = pd.DataFrame({"Chapter": [1, 2], "Name": ["Text Classification", "NER"], "Pages": [36, 24]})


def test_tapex_input_flattens_as_tapex_tokenizer_did():
    expected = ("how many pages? col : chapter | name | pages "
                "row 1 : 1 | text classification | 36 row 2 : 2 | ner | 24")
    assert tapas.tapex_input(SMALL_TABLE, "How many pages?") == expected
    # the row numbers count from 1 whatever the index; the frame itself is left as it was
    shuffled = SMALL_TABLE.iloc[::-1]
    assert tapas.tapex_input(shuffled, "  x ").startswith("x col : chapter | name | pages row 1 : 2 | ner | 24 row 2 : 1")
    assert list(SMALL_TABLE["Name"]) == ["Text Classification", "NER"]


def test_tapex_input_is_lower_case_throughout():
    text = tapas.tapex_input(pd.DataFrame({"TEAM": ["Rovers FC"], "Goals": ["12"]}), "Which TEAM scored?")
    assert text == text.lower() and "which team scored? col : team | goals row 1 : rovers fc | 12" == text


def test_tapex_input_cuts_long_cells_with_a_tokenizer_as_truncate_cell_did():
    class Words:  # one piece per word
        def tokenize(self, text):
            return text.split()

        def convert_tokens_to_string(self, pieces):
            return " ".join(pieces)

    frame = pd.DataFrame({"a": ["one two three four", "one two three", "one two", " "]})
    text = tapas.tapex_input(frame, "q", tokenizer=Words(), max_cell_length=3)
    assert text == "q col : a row 1 : one two three row 2 : one two three row 3 : one two row 4 :  "
    assert tapas.tapex_input(frame, "q").startswith("q col : a row 1 : one two three four row 2")  # no tokenizer: whole


@pytest.mark.parametrize("table, question, error, message", [
    ([["a", "b"]], "q", TypeError, "DataFrame"),
    (pd.DataFrame(), "q", ValueError, "empty"),
    (SMALL_TABLE, "", ValueError, "question is empty"),
    (SMALL_TABLE, "   ", ValueError, "question is empty"),
    (SMALL_TABLE, None, TypeError, "question must be a str"),
])
def test_tapex_input_bad_input(table, question, error, message):
    with pytest.raises(error, match=message):
        tapas.tapex_input(table, question)


def test_verify_statements_gives_each_statement_a_distribution_over_the_labels(tokenizer):
    import torch
    from transformers import TapasForSequenceClassification

    torch.manual_seed(0)
    config = tapas.small_config(tokenizer.vocab_size, num_hidden_layers=1, max_position_embeddings=512,
                                num_labels=2, id2label={0: "refuted", 1: "entailed"},
                                label2id={"refuted": 0, "entailed": 1})
    model = TapasForSequenceClassification(config)
    table = tapas.book_frame()
    statements = ["Summarization has 19 pages.", "There are ten chapters.", "Conclusion ends on page 144."]
    scores = tapas.verify_statements(model, tokenizer, table, statements)
    assert list(scores.columns) == ["statement", "refuted", "entailed", "predicted"]
    assert scores.shape == (3, 4) and list(scores["statement"]) == statements
    assert ((scores[["refuted", "entailed"]] >= 0) & (scores[["refuted", "entailed"]] <= 1)).all().all()
    assert scores[["refuted", "entailed"]].sum(axis=1).tolist() == pytest.approx([1.0] * 3)
    assert list(scores["predicted"]) == scores[["refuted", "entailed"]].idxmax(axis=1).tolist()
    one = tapas.verify_statements(model, tokenizer, table, statements[0])  # one statement as a str
    assert one.shape == (1, 4) and one.loc[0, "entailed"] == pytest.approx(scores.loc[0, "entailed"], abs=1e-5)
    with pytest.raises(ValueError, match="statement is empty"):
        tapas.verify_statements(model, tokenizer, table, ["Summarization has 19 pages.", " "])
    with pytest.raises(ValueError, match="no statement"):
        tapas.verify_statements(model, tokenizer, table, [])
    with pytest.raises(TypeError, match="DataFrame"):
        tapas.verify_statements(model, tokenizer, table.to_dict(), statements)


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory):
    """A random BART of two layers and a byte-level BPE tokenizer (vocab.json + merges.txt), as TAPEX has."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer

    folder = tmp_path_factory.mktemp("bart")
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator([tapas.tapex_input(tapas.book_frame(), "what is the total number of pages? 138")],
                                vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    backend.save_model(str(folder))
    tokenizer = BartTokenizer.from_pretrained(folder)  # reads vocab.json and merges.txt
    torch.manual_seed(0)
    config = BartConfig(vocab_size=backend.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=256, bos_token_id=0, pad_token_id=1, eos_token_id=2,
                        decoder_start_token_id=2)
    return BartForConditionalGeneration(config), tokenizer


def test_ask_tapex_reads_the_generated_answer_and_checks_it(tiny_bart, monkeypatch):
    model, tokenizer = tiny_bart
    table, question = tapas.prepare_table(tapas.book_frame()), "What is the total number of pages?"
    seen = []

    def generate(input_ids, attention_mask, **kwargs):
        seen.append(input_ids)
        return tokenizer(" 138.0", return_tensors="pt")["input_ids"]  # <s> 138.0 </s>, as BART writes it

    monkeypatch.setattr(model, "generate", generate)
    row = tapas.ask_tapex(model, tokenizer, table, question, 138)
    assert set(row) == {"question", "tapex", "executed", "gold", "correct"}
    assert row["tapex"] == "138.0" and row["executed"] == 138 and row["correct"] is True
    expected = tokenizer(tapas.tapex_input(table, question, tokenizer=tokenizer), return_tensors="pt")["input_ids"]
    assert seen[0].tolist() == expected.tolist()
    assert tapas.ask_tapex(model, tokenizer, table, question, 139)["correct"] is False  # denotation_match, by value
    assert set(tapas.ask_tapex(model, tokenizer, table, question)) == {"question", "tapex", "executed"}
    monkeypatch.setattr(model, "generate", lambda **kw: tokenizer(" summarization", return_tensors="pt")["input_ids"])
    assert tapas.ask_tapex(model, tokenizer, table, "What's the topic in chapter 4?", "Summarization")["correct"]


def test_ask_tapex_generates_with_a_real_model_and_refuses_an_input_too_long(tiny_bart):
    model, tokenizer = tiny_bart
    table = tapas.prepare_table(tapas.book_frame())
    row = tapas.ask_tapex(model, tokenizer, table, "What is the total number of pages?", 138, max_new_tokens=4)
    assert isinstance(row["tapex"], str) and isinstance(row["correct"], bool)
    long_table = pd.concat([table] * 20, ignore_index=True)
    with pytest.raises(ValueError, match=r"take \d+ tokens, more than the 256 positions"):
        tapas.ask_tapex(model, tokenizer, long_table, "What is the total number of pages?")


def test_book_statements_are_true_or_false_by_the_books_table():
    frame = tapas.book_frame()
    assert [tapas.run_pandas(code, frame) for _, code in tapas.BOOK_STATEMENTS] == [True, False, False]
    bigger = frame.assign(number_of_pages=frame["number_of_pages"].replace({24: 40}))  # NER now longer than text classification
    assert tapas.run_pandas(tapas.BOOK_STATEMENTS[1][1], bigger) is True


def test_senseless_aggregates_finds_the_unlabelled_generators_totals_of_years_and_positions():
    held = tapas.generate_examples(25, seed=2, sensible=False)
    odd = tapas.senseless_aggregates(held)
    assert len(odd) == 19 and {e.kind for e in odd} == {"sum", "average"}
    sensible = tapas.generate_examples(25, seed=2)  # the same generator reading its columns' labels
    assert tapas.senseless_aggregates(sensible) == [] and len(sensible) == 141
    assert tapas.senseless_aggregates(tapas.generate_examples(100, seed=1)) == []
    assert {e.kind for e in sensible} == {e.kind for e in held}  # every kind still asked
    allowed = tapas.column_operations()
    assert allowed["start_page"] == () and allowed["age"] == ("average",) and allowed["goals"] == ("sum", "average")
    assert all(("sum" if e.kind == "sum" else "average") not in allowed[e.pandas.split('"')[1]] for e in odd)
    assert tapas.senseless_aggregates(tapas.generate_split("train", 100)) == []  # the broad generator asks none
    assert tapas.summable_headers() == {h: "sum" in ops for h, ops in allowed.items()}


def test_supervision_seed_counts_count_seeds_at_or_above_the_share():
    rows = []
    for seed, flags in enumerate([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]):  # kind "sum": 1, 1/2, 0 of 2; "lookup": 1/2, 0, 0
        rows += [dict(supervision="weak", seed=seed, question=i, kind=("sum" if i < 2 else "lookup"), table=i,
                      correct=bool(f)) for i, f in enumerate(flags[:2] + flags[2:])]
    runs = pd.DataFrame(rows)
    runs.loc[(runs.seed == 0) & (runs.question == 2), "correct"] = True
    table = tapas.supervision_seed_counts({"r": runs}, arms=("weak", "strong"))
    assert list(table.columns) == ["r: weak"] and list(table.index)[-1] == "all"
    assert table.loc["sum", "r: weak"] == "2 of 3" and table.loc["lookup", "r: weak"] == "1 of 3"
    assert table.loc["all", "r: weak"] == "1 of 3"  # seed 0: 3 of 4; seed 1: 1 of 4, below one half
    with pytest.raises(ValueError, match="share"):
        tapas.supervision_seed_counts({"r": runs}, share=0)
    with pytest.raises(ValueError, match="none of the records"):
        tapas.supervision_seed_counts({"r": runs}, arms=("strong",))


def test_theme_level_rule_gap_resamples_the_twelve_new_themes():
    import json

    from utils import data_path

    records = [json.loads(data_path("tapas", f"{name}_runs.json").read_text()) for name in ("stage5", "test3", "test4")]
    themes, gap = tapas.theme_level_rule_gap(*records)
    assert len(themes) == 12 and set(themes["split"]) == {"test2", "test3", "test4"}
    assert themes.groupby("split").size().tolist() == [4, 4, 4] and int((themes["difference"] > 0).sum()) == 1
    assert gap.difference == pytest.approx(themes["difference"].mean()) and gap.low < gap.difference < gap.high < 0
    parks = themes.set_index("theme").loc["parks"]  # the one theme where the model is ahead
    assert parks["questions"] == 65 and parks["model"] > parks["rule"]


def test_load_supervision_records_reads_every_planned_record_on_the_same_questions():
    records = tapas.load_supervision_records()
    assert list(records) == list(tapas.SUPERVISION_RECORDS)
    held = tapas.generate_examples(25, seed=2)
    for name, record in records.items():
        assert record["kinds"] == [e.kind for e in held], name  # every record scores the live run's held-out questions
        assert record["train_questions"] == len(tapas.generate_examples(100, seed=1)), name
        assert record["command"].startswith("python scripts/tapas_supervision.py --out data/tapas/supervision_runs"), name
    assert records["masked-LM encoder"]["encoder_metrics"]["command"].startswith("python scripts/tapas_pretrain.py pretrain")
