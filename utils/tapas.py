"""Question answering over tables with TAPAS (notebook 05).

Three jobs:

* execute a TAPAS answer: the model predicts an aggregation operator and a set of cells, and
  :func:`execute_answer` turns the pair into the value a reader wants (the pipeline only prints
  ``"SUM > 10, 36, ..."``);
* generate seeded synthetic tables and questions whose gold answers come from a pandas one-liner
  (:func:`generate_examples`), the training and test data of the small TAPAS;
* build a WordPiece vocabulary with the ``tokenizers`` library from the text shipped in
  ``data/tapas/`` so that :class:`transformers.TapasTokenizer` can load it (:func:`build_vocab`).

The remaining helpers encode examples for training, build the small model's config and score a
``table-question-answering`` pipeline on generated questions (:func:`accuracy_by_kind`, with
intervals from :mod:`utils.evaluation` over the test questions for one fixed model).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

AGGREGATION_LABELS = {0: "NONE", 1: "SUM", 2: "AVERAGE", 3: "COUNT"}
"""The WTQ checkpoints' operators, in their order (google/tapas-base-finetuned-wtq's config)."""

AGGREGATION_IDS = {name: index for index, name in AGGREGATION_LABELS.items()}

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EMPTY]"]
"""TapasTokenizer's special tokens; [PAD] first so that its id is 0, the config's pad_token_id."""

TOKEN_TYPES = [
    "segment",
    "column",
    "row",
    "previous answer",
    "column rank",
    "inverse column rank",
    "numeric relation",
]
"""The seven channels of ``token_type_ids``, in the order TapasTokenizer writes them."""


# ---------------------------------------------------------------------------------------------
# Executing an answer
# ---------------------------------------------------------------------------------------------


def parse_number(text):
    """The number written in a table cell: ``"1,234"`` -> 1234.0; ValueError when there is none."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise TypeError(f"a cell must be a str or a number, got {type(text).__name__}: {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    try:
        value = float(text.strip().replace(",", ""))
    except ValueError:
        raise ValueError(f"cell {text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"cell {text!r} is not a finite number")
    return value


def _as_int_if_whole(value):
    return int(value) if float(value).is_integer() else float(value)


def execute_answer(aggregator, cells):
    """Apply TAPAS's aggregation operator to the selected cells and return the answer's value.

    ``aggregator`` is one of ``"NONE"``, ``"SUM"``, ``"AVERAGE"``, ``"COUNT"`` (or its index in
    :data:`AGGREGATION_LABELS`); ``cells`` is the list of selected cell texts, as the pipeline's
    ``answer["cells"]`` gives them. NONE returns the cell text (one cell) or the list of texts;
    SUM and AVERAGE return a number and refuse cells that are not numbers; COUNT returns how many
    cells were selected.
    """
    if isinstance(aggregator, int) and not isinstance(aggregator, bool):
        if aggregator not in AGGREGATION_LABELS:
            raise ValueError(f"aggregator index {aggregator} is not one of {sorted(AGGREGATION_LABELS)}")
        aggregator = AGGREGATION_LABELS[aggregator]
    if not isinstance(aggregator, str):
        raise TypeError(f"aggregator must be a str such as 'SUM', got {type(aggregator).__name__}")
    operator = aggregator.strip().upper()
    if operator not in AGGREGATION_IDS:
        raise ValueError(f"unknown aggregator {aggregator!r}; expected one of {list(AGGREGATION_IDS)}")
    if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)):
        raise TypeError(f"cells must be a list of cell texts, got {type(cells).__name__}: {cells!r}")
    for cell in cells:
        if not isinstance(cell, (str, int, float)) or isinstance(cell, bool):
            raise TypeError(f"each cell must be a str or a number, got {type(cell).__name__}: {cell!r}")

    if operator == "COUNT":
        return len(cells)
    if operator == "NONE":
        if not cells:
            raise ValueError("NONE with no selected cell has no value")
        texts = [str(cell) for cell in cells]
        return texts[0] if len(texts) == 1 else texts
    if operator == "AVERAGE" and not cells:
        raise ValueError("AVERAGE of no selected cell is undefined")
    numbers = []
    for cell in cells:
        try:
            numbers.append(parse_number(cell))
        except ValueError as error:
            raise ValueError(f"{operator} needs numeric cells: {error}") from None
    total = math.fsum(numbers)
    value = total if operator == "SUM" else total / len(numbers)
    return _as_int_if_whole(round(value, 9))


def execute_pipeline_answer(answer):
    """:func:`execute_answer` on one answer dict of ``pipeline("table-question-answering")``."""
    if not isinstance(answer, dict) or "cells" not in answer:
        raise TypeError(f"expected the pipeline's answer dict with a 'cells' key, got {answer!r}")
    return execute_answer(answer.get("aggregator", "NONE"), list(answer["cells"]))


BOOK_NOTEBOOK_ANSWERS = {
    "What's the topic in chapter 4?": "Summarization",
    "What is the total number of pages?": "SUM > 10, 36, 24, 46, 19, 3",
    "On which page does the chapter about question-answering start?": "AVERAGE > 74",
    "How many chapters have more than 20 pages?": "COUNT > 1, 2, 3",
}
"""The answers that the table-question-answering pipeline (its default checkpoint, google/tapas-base-finetuned-wtq,
under transformers 4.11.3) gave to the book's four questions when the book's authors ran their notebook, as its
saved outputs record them (github.com/nlp-with-transformers/notebooks, 11_future-directions.ipynb)."""


def recorded_pipeline(answers):
    """A stand-in for a table-question-answering pipeline that replays recorded answer strings ({question: "SUM >
    10, 36"}, as the pipeline writes them: an operator, " > ", the cells joined by ", "; a lone cell for NONE) as
    the pipeline's answer dicts, so that :func:`ask` can execute and check them. A question with no recorded answer
    raises KeyError."""
    def replay(table, query):
        if query not in answers:
            raise KeyError(f"no recorded answer for {query!r}")
        text = answers[query]
        operator, _, cells = text.partition(" > ") if " > " in text else ("NONE", "", text)
        return {"answer": text, "aggregator": operator, "cells": cells.split(", "), "coordinates": []}

    return replay


def denotation_match(predicted, gold, *, rel_tol=1e-6):
    """Whether an executed answer equals the gold value (numbers compared as numbers)."""
    if isinstance(predicted, list) or isinstance(gold, list):
        left = predicted if isinstance(predicted, list) else [predicted]
        right = gold if isinstance(gold, list) else [gold]
        return len(left) == len(right) and all(denotation_match(a, b) for a, b in zip(left, right))
    try:
        a, b = parse_number(predicted), parse_number(gold)
    except (TypeError, ValueError):
        return " ".join(str(predicted).lower().split()) == " ".join(str(gold).lower().split())
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def prepare_table(table):
    """The table as TapasTokenizer needs it: every cell a str and a 0..n-1 row index.

    TapasTokenizer addresses rows with ``iloc`` using the labels that ``iterrows`` yields, so a
    table with any other index (after a filter or a sort) would silently read the wrong rows.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"the table is empty ({table.shape[0]} rows, {table.shape[1]} columns): nothing to ask about")
    if not table.columns.is_unique:
        raise ValueError(f"column names must be unique, got {list(table.columns)}")
    return table.reset_index(drop=True).astype(str)


# ---------------------------------------------------------------------------------------------
# Synthetic tables and questions
# ---------------------------------------------------------------------------------------------

BOOK_ROWS = [
    (0, "Introduction", 1, 11),
    (1, "Text classification", 12, 48),
    (2, "Named Entity Recognition", 49, 73),
    (3, "Question Answering", 74, 120),
    (4, "Summarization", 121, 140),
    (5, "Conclusion", 141, 144),
]


def book_frame():
    """The book's table of chapters with numeric columns (cast to str with :func:`prepare_table`)."""
    frame = pd.DataFrame(BOOK_ROWS, columns=["chapter", "name", "start_page", "end_page"])
    frame["number_of_pages"] = frame["end_page"] - frame["start_page"]
    return frame


BOOK_QUESTIONS = [
    ("What's the topic in chapter 4?", 'df.loc[df["chapter"] == 4, "name"].item()'),
    ("What is the total number of pages?", 'df["number_of_pages"].sum()'),
    (
        "On which page does the chapter about question-answering start?",
        'df.loc[df["name"] == "Question Answering", "start_page"].item()',
    ),
    ("How many chapters have more than 20 pages?", '(df["number_of_pages"] > 20).sum()'),
]
"""The book's four questions with the pandas one-liner that answers each."""


BOOK_STATEMENTS = (
    ("Question Answering is the longest chapter, with 46 pages.",
     'df.loc[df["number_of_pages"].idxmax(), "name"] == "Question Answering" and df["number_of_pages"].max() == 46'),
    ("Named Entity Recognition has more pages than Text classification.",
     'df.loc[df["name"] == "Named Entity Recognition", "number_of_pages"].item() > '
     'df.loc[df["name"] == "Text classification", "number_of_pages"].item()'),
    ("The chapters add up to 150 pages.", 'df["number_of_pages"].sum() == 150'),
)
"""Three statements about the book's table, TabFact's kind of question, each with the pandas that is True when it holds."""


def run_pandas(code, frame):
    """Evaluate one of our pandas one-liners on ``frame`` (named ``df`` in the code)."""
    value = eval(code, {"__builtins__": {"len": len}}, {"df": frame})  # noqa: S307 - our own generated code
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        value = _as_int_if_whole(round(value, 9))
    return value


@dataclass
class Example:
    """One generated question about one table, with its gold answer and strong supervision."""

    table: pd.DataFrame  # every cell a str, as TAPAS reads it
    question: str
    aggregator: str  # NONE, SUM, AVERAGE or COUNT
    coordinates: list  # (row, column) of the cells the operator applies to
    pandas: str  # the one-liner, on the numeric frame named df
    gold: object  # its value
    kind: str = ""  # the template family, for per-kind accuracy
    theme: str = ""  # the table's theme (set by generate_split and broad_lookups)

    @property
    def answer_text(self):
        return [self.table.iat[row, col] for row, col in self.coordinates]

    @property
    def aggregation_label(self):
        return AGGREGATION_IDS[self.aggregator]


AVERAGE_ONLY = ("average",)
NO_AGGREGATE = ()


@dataclass
class _Column:
    header: str
    phrases: list  # how questions name it
    low: int = 0
    high: int = 100
    decimals: int = 0
    lookup: list = field(default_factory=list)  # extra lookup templates with {entity} and {key}
    countable: bool = False  # its phrases are things one counts ("goals"), so "how many goals" reads well
    operations: tuple = ("sum", "average")  # the aggregations that make sense over it: a total of goals
    # or pages, an average of ages or ratings (never a sum), neither for a year or a start page


_TOPIC_WORDS = (
    "text classification named entity recognition question answering summarization translation generation "
    "efficiency training scaling attention tokenization sentiment analysis retrieval search speech vision tables "
    "dialogue evaluation compression pretraining transformers labels few shot learning multilingual models data "
    "future directions anatomy deployment datasets decoding embeddings clustering parsing grammar memory "
    "optimization ethics bias introduction conclusion overview basics advanced methods history"
).split()
_FIRST = "ana ben carla dev emma felix gina hugo iris jonas kai lena mateo nora omar paula quinn rosa sami tara".split()
_LAST = "silva meyer okafor tanaka novak rossi haddad kowalski garcia lindqvist moreau patel svensson ito".split()
_PLACES = (
    "porto bergen lyon kyoto accra quito perth tartu gdansk malaga osaka leeds graz cusco hobart tromso valencia "
    "nantes sapporo krakow"
).split()
_COUNTRIES = "portugal norway france japan ghana ecuador australia estonia poland spain".split()
_ADJECTIVES = "red quiet rapid golden tiny smart silver bold fresh lunar solar wooden".split()
_NOUNS = "lamp kettle chair bottle camera drone backpack speaker clock mug tent bicycle".split()
_TEAMS = "rovers united city athletic wanderers rangers".split()


def _title(words):
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _unique(rng, make, n):
    seen, values = set(), []
    while len(values) < n:
        value = make()
        if value.lower() not in seen:
            seen.add(value.lower())
            values.append(value)
    return values


def _distinct_numbers(rng, n, low, high, decimals=0):
    if decimals:
        scale = 10**decimals
        picks = rng.sample(range(int(low * scale), int(high * scale) + 1), n)
        return [round(p / scale, decimals) for p in picks]
    return rng.sample(range(low, high + 1), n)


def _chapters(rng, n_rows):
    names = _unique(rng, lambda: _title(rng.sample(_TOPIC_WORDS, rng.choice([1, 1, 2, 2, 3]))), n_rows)
    first = rng.choice([0, 1])
    pages = [rng.randint(2, 50) for _ in range(n_rows)]
    start = [1 + rng.randint(0, 20)]
    for length in pages[:-1]:
        start.append(start[-1] + length)
    frame = pd.DataFrame({"chapter": range(first, first + n_rows), "name": names, "start_page": start})
    frame["end_page"] = frame["start_page"] + pd.Series(pages)
    frame["number_of_pages"] = pages
    columns = {
        "start_page": _Column(
            "start_page",
            ["start page", "first page"],
            lookup=["On which page does the {entity} about {key} start?", "Where does the {entity} on {key} start?"],
            operations=(),
        ),
        "end_page": _Column(
            "end_page",
            ["end page", "last page"],
            lookup=["On which page does the {entity} about {key} end?"],
            operations=(),
        ),
        "number_of_pages": _Column("number_of_pages", ["pages", "number of pages"]),
    }
    keep = ["chapter", "name"] + rng.sample(["start_page", "end_page", "number_of_pages"], rng.choice([2, 3]))
    keep = [c for c in frame.columns if c in keep]
    numeric = {c: columns[c] for c in keep if c in columns}
    schema = dict(entity=("chapter", "chapters"), key="name", key_phrases=["topic", "name", "title"], id="chapter")
    return frame[keep], schema, numeric


def _generic(rng, n_rows, entity, key, key_phrases, make_key, extra_text, numeric_pool, id_column=None):
    frame = pd.DataFrame({key: _unique(rng, make_key, n_rows)})
    if extra_text is not None:
        header, choices = extra_text
        frame[header] = [rng.choice(choices) for _ in range(n_rows)]
    picked = rng.sample(numeric_pool, rng.randint(2, min(3, len(numeric_pool))))
    numeric = {}
    for column in picked:
        frame[column.header] = _distinct_numbers(rng, n_rows, column.low, column.high, column.decimals)
        numeric[column.header] = column
    if id_column is not None:
        frame.insert(0, id_column, range(1, n_rows + 1))
    schema = dict(entity=entity, key=key, key_phrases=key_phrases, id=id_column)
    return frame, schema, numeric


def _players(rng, n_rows):
    pool = [
        _Column("goals", ["goals"], 0, 40),
        _Column("games", ["games", "matches"], 1, 60),
        _Column("assists", ["assists"], 0, 30),
        _Column("age", ["age"], 17, 39, operations=AVERAGE_ONLY),
    ]
    return _generic(
        rng, n_rows, ("player", "players"), "player", ["player", "name"],
        lambda: f"{rng.choice(_FIRST).title()} {rng.choice(_LAST).title()}",
        ("team", [t.title() for t in _TEAMS]), pool,
    )


def _cities(rng, n_rows):
    pool = [
        _Column("population", ["population", "inhabitants"], 50, 3000),
        _Column("area_km2", ["area"], 20, 900),
        _Column("founded", ["founding year"], 900, 1900, operations=()),
        _Column("museums", ["museums"], 1, 60),
    ]
    return _generic(
        rng, n_rows, ("city", "cities"), "city", ["city", "name"],
        lambda: rng.choice(_PLACES).title(), ("country", [c.title() for c in _COUNTRIES]), pool,
    )


def _products(rng, n_rows):
    pool = [
        _Column("price", ["price"], 2, 300, decimals=rng.choice([0, 2]), operations=AVERAGE_ONLY),
        _Column("stock", ["units in stock", "stock"], 0, 500),
        _Column("orders", ["orders"], 1, 900),
        _Column("weight_g", ["weight"], 50, 5000, operations=AVERAGE_ONLY),
    ]
    return _generic(
        rng, n_rows, ("product", "products"), "product", ["product", "name"],
        lambda: _title([rng.choice(_ADJECTIVES), rng.choice(_NOUNS)]), None, pool, id_column="item",
    )


def _episodes(rng, n_rows):
    pool = [
        _Column("minutes", ["minutes", "running time"], 18, 70),
        _Column("viewers", ["viewers"], 100, 9000),
        _Column("scenes", ["scenes"], 3, 80),
    ]
    return _generic(
        rng, n_rows, ("episode", "episodes"), "title", ["title", "name"],
        lambda: _title(rng.sample(_TOPIC_WORDS + _NOUNS, rng.choice([1, 2, 3]))), None, pool, id_column="episode",
    )


THEMES = {"chapters": _chapters, "players": _players, "cities": _cities, "products": _products, "episodes": _episodes}
"""Table shapes: name -> maker(rng, n_rows) returning (numeric frame, schema, numeric columns)."""


def make_table(seed=0, *, theme=None, n_rows=None):
    """One synthetic table: (numeric pandas frame, schema). ``prepare_table`` gives TAPAS's str view."""
    rng = random.Random(seed)
    return _make_table(rng, theme, n_rows)[:2]


def _make_table(rng, theme=None, n_rows=None):
    theme = theme if theme is not None else rng.choice(sorted(THEMES))
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; choose one of {sorted(THEMES)}")
    n_rows = n_rows if n_rows is not None else rng.randint(3, 8)
    if not isinstance(n_rows, int) or n_rows < 2:
        raise ValueError(f"a generated table needs at least 2 rows, got n_rows={n_rows!r}")
    return THEMES[theme](rng, n_rows)


def _key_variant(rng, key):
    """How a question may spell a table's key: as written, lower case, or hyphenated."""
    words = key.split()
    return rng.choice([key, key.lower(), "-".join(w.lower() for w in words) if len(words) > 1 else key.lower()])


def _threshold(rng, values):
    """A round-ish number strictly between two of the values, so 'more than' selects 1..n-1 cells."""
    ordered = sorted(values)
    gaps = list(range(len(ordered) - 1))
    rng.shuffle(gaps)
    for i in gaps:
        lo, hi = ordered[i], ordered[i + 1]
        candidates = [v for v in range(math.floor(lo) + 1, math.ceil(hi)) if lo < v < hi]
        if candidates:
            round_ones = [v for v in candidates if v % 10 == 0] or [v for v in candidates if v % 5 == 0]
            return rng.choice(round_ones or candidates)
    return None


def _lookup_by_name(frame, schema, name, column, row, rng):
    """The arguments of ``add`` for a question naming row ``row`` by its key and asking for ``name``."""
    key = schema["key"]
    key_value = frame[key].iat[row]
    templates = ["What is the {phrase} of {key}?", "What's the {phrase} for {key}?", "Tell me the {phrase} of {key}."]
    template = rng.choice(templates + column.lookup)
    question = template.format(phrase=rng.choice(column.phrases), key=_key_variant(rng, key_value), entity=schema["entity"][0])
    code = f'df.loc[df["{key}"] == {key_value!r}, "{name}"].item()'
    return question, "NONE", [(row, list(frame.columns).index(name))], code, "lookup"


def questions_for_table(frame, schema, numeric, rng, *, sensible=True):
    """Every question family once for this table, as :class:`Example` objects (gold by pandas).

    A sum or an average is asked only of a column whose ``operations`` allow it (no total of founding years or start
    pages, no total of ages or prices); a table with no such column gets no question of that kind.
    ``sensible=False`` draws the column from all numeric ones, as the generator did before its columns were labelled:
    the shipped checkpoint's first two stages trained on that, and its held-out record (metrics.json) is scored on it."""
    table = prepare_table(frame)
    col = {name: i for i, name in enumerate(frame.columns)}
    singular, plural = schema["entity"]
    key = schema["key"]
    out = []

    def add(question, aggregator, coordinates, code, kind):
        gold = run_pandas(code, frame)
        out.append(Example(table, question, aggregator, sorted(coordinates), code, gold, kind))

    name, column = rng.choice(sorted(numeric.items()))
    row = rng.randrange(len(frame))
    add(*_lookup_by_name(frame, schema, name, column, row, rng))

    if schema.get("id"):
        row = rng.randrange(len(frame))
        ident = int(frame[schema["id"]].iat[row])
        template = rng.choice(
            ["What's the {phrase} in {entity} {id}?", "What is the {phrase} of {entity} {id}?", "Which {phrase} has {entity} {id}?"]
        )
        question = template.format(phrase=rng.choice(schema["key_phrases"]), entity=singular, id=ident)
        add(question, "NONE", [(row, col[key])], f'df.loc[df["{schema["id"]}"] == {ident}, "{key}"].item()', "lookup by id")

    templates = {
        "sum": ["What is the total {phrase}?", "What is the total number of {phrase}?", "What is the sum of the {phrase}?",
                "How many {phrase} are there in total?", "What are the {phrase} of all {plural} added up?"],
        "average": ["What is the average {phrase}?", "What is the mean {phrase}?",
                    "What is the average {phrase} per {singular}?", "On average, what is the {phrase} of a {singular}?"],
    }
    for kind, aggregator, method in (("sum", "SUM", "sum"), ("average", "AVERAGE", "mean")):
        eligible = sorted((n, c) for n, c in numeric.items() if kind in c.operations or not sensible)
        if not eligible:  # only start or end pages here: nothing one would add up or average
            continue
        name, column = rng.choice(eligible)
        phrase = rng.choice(column.phrases)
        template = rng.choice(templates[kind])
        cells = [(r, col[name]) for r in range(len(frame))]
        add(template.format(phrase=phrase, plural=plural, singular=singular), aggregator, cells,
            f'df["{name}"].{method}()', kind)

    name, column = rng.choice(sorted(numeric.items()))
    threshold = _threshold(rng, frame[name].tolist())
    if threshold is not None:
        phrase = rng.choice(column.phrases)
        more = rng.random() < 0.5
        if more:
            template = rng.choice(["How many {plural} have more than {v} {phrase}?", "How many {plural} have {phrase} above {v}?",
                                   "How many {plural} have {phrase} greater than {v}?"])
        else:
            template = rng.choice(["How many {plural} have less than {v} {phrase}?", "How many {plural} have {phrase} below {v}?",
                                   "How many {plural} have fewer than {v} {phrase}?"])
        op = ">" if more else "<"
        cells = [(r, col[name]) for r, v in enumerate(frame[name]) if (v > threshold if more else v < threshold)]
        add(template.format(plural=plural, v=threshold, phrase=phrase), "COUNT", cells,
            f'(df["{name}"] {op} {threshold}).sum()', "count with condition")

    template = rng.choice(["How many {plural} are there?", "How many {plural} does the table list?",
                           "What is the number of {plural}?"])
    cells = [(r, col[key]) for r in range(len(frame))]
    add(template.format(plural=plural), "COUNT", cells, "len(df)", "count rows")
    return out


def generate_examples(n_tables, *, seed=0, questions_per_table=None, themes=None, sensible=True):
    """Examples from ``n_tables`` seeded synthetic tables (one per question family, or a sample).

    Different seeds give different tables, so training and test sets come from two seeds. ``sensible``: see
    :func:`questions_for_table` (False reproduces the sets the shipped checkpoint's first stages saw).
    """
    if not isinstance(n_tables, int) or n_tables < 1:
        raise ValueError(f"n_tables must be a positive int, got {n_tables!r}")
    rng = random.Random(seed)
    chosen = sorted(THEMES) if themes is None else list(themes)
    for theme in chosen:
        if theme not in THEMES:
            raise ValueError(f"unknown theme {theme!r}; choose from {sorted(THEMES)}")
    examples = []
    for _ in range(n_tables):
        frame, schema, numeric = _make_table(rng, rng.choice(chosen))
        questions = questions_for_table(frame, schema, numeric, rng, sensible=sensible)
        if questions_per_table is not None:
            questions = rng.sample(questions, min(questions_per_table, len(questions)))
        examples.extend(questions)
    return examples


def generate_lookups(n_tables, *, seed=0):
    """Lookup-by-name questions only: one per row of ``n_tables`` seeded tables, each asking for a
    random numeric column of the row its key names.

    Matching the question's words to a cell is the one skill that no token-type channel hands
    TAPAS (numbers get the numeric-relation channel), so it needs many more examples than the
    one lookup per table that :func:`generate_examples` writes.
    """
    if not isinstance(n_tables, int) or n_tables < 1:
        raise ValueError(f"n_tables must be a positive int, got {n_tables!r}")
    rng = random.Random(seed)
    examples = []
    for _ in range(n_tables):
        frame, schema, numeric = _make_table(rng)
        table = prepare_table(frame)
        for row in range(len(frame)):
            name, column = rng.choice(sorted(numeric.items()))
            question, aggregator, coordinates, code, kind = _lookup_by_name(frame, schema, name, column, row, rng)
            examples.append(Example(table, question, aggregator, coordinates, code, run_pandas(code, frame), kind))
    return examples


NOVEL_QUESTIONS = (
    ("How many words are there in chapter 3?", 'df.loc[df["chapter"] == 3, "words"].item()', "lookup by id"),
    ("How many paragraphs does the fifth chapter have?", 'df.loc[df["chapter"] == 5, "paragraphs"].item()', "lookup by id"),
    ("How often is Darcy named in chapter 4?", 'df.loc[df["chapter"] == 4, "mentions_of_darcy"].item()', "lookup by id"),
    ("Which chapter opens with the words It is a truth?", 'df.loc[df["opening"] == "It is a truth", "chapter"].item()', "lookup"),
    ("Which chapter begins with Mr. Bennet was among?", 'df.loc[df["opening"] == "Mr. Bennet was among", "chapter"].item()',
     "lookup"),
    ("How many words do these chapters have in all?", 'df["words"].sum()', "sum"),
    ("How many times is Elizabeth mentioned altogether?", 'df["mentions_of_elizabeth"].sum()', "sum"),
    ("On average, how many words does a chapter have?", 'df["words"].mean()', "average"),
    ("What is the mean number of paragraphs per chapter?", 'df["paragraphs"].mean()', "average"),
    ("In how many chapters is Bingley mentioned more than 10 times?", '(df["mentions_of_bingley"] > 10).sum()',
     "count with condition"),
    ("How many chapters have fewer than 30 paragraphs?", '(df["paragraphs"] < 30).sum()', "count with condition"),
    ("How many chapters does the table list?", "len(df)", "count rows"),
)
"""Twelve questions written by hand about :func:`novel_chapters`, as a reader might ask them, each with the pandas that
answers it and its kind; fixed before any model or rule was scored on them."""


def novel_chapters(n=8):
    """A real table: the first `n` chapters of the shipped *Pride and Prejudice*, counted from its text. Columns:
    chapter, opening (its first four words), words (runs of letters and apostrophes), paragraphs (blocks between
    blank lines), and how often the words Elizabeth, Darcy and Bingley occur in it."""
    import re

    from .core import data_path

    if not 1 <= n <= 61:
        raise ValueError(f"n must be between 1 and 61 (the novel has 61 chapters), got {n}")
    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8")
    parts = re.split(r"^Chapter (\d+)\s*$", text, flags=re.M)
    rows = []
    for number, body in zip(parts[1:2 * n:2], parts[2:2 * n + 1:2]):
        rows.append({"chapter": int(number), "opening": " ".join(body.split()[:4]),
                     "words": len(re.findall(r"[A-Za-z']+", body)),
                     "paragraphs": sum(1 for block in re.split(r"\n\s*\n", body) if block.strip()),
                     **{f"mentions_of_{name.lower()}": len(re.findall(rf"\b{name}\b", body))
                        for name in ("Elizabeth", "Darcy", "Bingley")}})
    return pd.DataFrame(rows)


def novel_examples():
    """:data:`NOVEL_QUESTIONS` as examples over :func:`novel_chapters`, each gold the value of its pandas."""
    frame = novel_chapters()
    table = prepare_table(frame)
    return [Example(table, question, "", [], code, run_pandas(code, frame), kind, "novel chapters")
            for question, code, kind in NOVEL_QUESTIONS]


def book_examples():
    """The book's table and four questions as :class:`Example` objects, gold from pandas."""
    frame = book_frame()
    table = prepare_table(frame)
    return [(question, code, run_pandas(code, frame)) for question, code in BOOK_QUESTIONS], table


# ---------------------------------------------------------------------------------------------
# The broad generator: many themes, many phrasings, and splits that hold some of each out
# ---------------------------------------------------------------------------------------------
#
# generate_examples above is the generator the shipped checkpoint was trained on (five themes, a
# few templates per question kind); it stays as it is so that its seeded sets stay reproducible.
# generate_split below draws from BROAD_THEMES (those five plus eight more) for training, and keeps
# HELD_OUT_THEMES and the HELD_OUT templates of every question kind out of training, to measure
# what a model does with tables and words it has never seen.

_SYNONYMS = {  # more names for the five original themes' columns, used by the broad generator only
    "goals": ["goals scored"], "games": ["appearances"], "assists": ["assists made"], "age": ["years of age"],
    "population": ["number of inhabitants", "residents"], "area_km2": ["area in square kilometres", "size"],
    "founded": ["year of founding"], "museums": ["museums"], "price": ["cost"], "stock": ["units available"],
    "orders": ["orders placed"], "weight_g": ["weight in grams"], "minutes": ["length in minutes", "duration"],
    "viewers": ["audience"], "scenes": ["scenes"], "start_page": ["opening page"], "end_page": ["final page"],
    "number_of_pages": ["length in pages", "page count"],
}
_COUNTABLE = {"goals", "games", "assists", "museums", "orders", "viewers", "scenes", "number_of_pages", "stock"}


def _col(header, phrases, low, high, decimals=0, countable=False, ops=("sum", "average")):
    return _Column(header, phrases, low, high, decimals, countable=countable, operations=tuple(ops))


def _names(rng, *pools):
    return _title([rng.choice(pool) for pool in pools])


_WORDS = "river stone garden winter summer morning silent golden little great lost hidden open north".split()
_BROAD = {  # theme -> (entity, key, key phrases, key maker, text column or None, numeric pool, id column)
    "books": (("book", "books"), "title", ["title", "name"], lambda rng: _names(rng, _WORDS, _NOUNS + _TOPIC_WORDS),
              ("author", [f"{f.title()} {l.title()}" for f, l in zip(_FIRST, _LAST)]),
              [_col("pages", ["pages", "number of pages", "length"], 80, 900, countable=True),
               _col("year", ["year", "publication year"], 1800, 2023, ops=NO_AGGREGATE),
               _col("copies_sold", ["copies sold", "sales"], 1000, 90000, countable=True)], None),
    "employees": (("employee", "employees"), "employee", ["employee", "name"],
                  lambda rng: f"{rng.choice(_FIRST).title()} {rng.choice(_LAST).title()}",
                  ("department", ["Sales", "Finance", "Research", "Support", "Legal"]),
                  [_col("salary", ["salary", "pay", "yearly salary"], 28000, 99000),
                   _col("age", ["age"], 20, 64, ops=AVERAGE_ONLY),
                   _col("projects", ["projects"], 0, 25, countable=True),
                   _col("years_employed", ["years employed", "years of service"], 0, 30, ops=AVERAGE_ONLY)], "staff_id"),
    "restaurants": (("restaurant", "restaurants"), "restaurant", ["restaurant", "name"],
                    lambda rng: _names(rng, _ADJECTIVES, ["fork", "table", "kitchen", "oven", "garden", "spoon", "grill"]),
                    ("cuisine", ["Italian", "Thai", "Mexican", "Greek", "Indian", "Korean"]),
                    [_col("seats", ["seats", "places"], 12, 220, countable=True),
                     _col("rating", ["rating", "score"], 1, 5, decimals=1, ops=AVERAGE_ONLY),
                     _col("dishes", ["dishes", "items on the menu"], 8, 90, countable=True)], None),
    "cars": (("car", "cars"), "model", ["model", "name"],
             lambda rng: _names(rng, ["swift", "nova", "arrow", "breeze", "falcon", "comet", "ranger", "pulse"], ["gt", "one", "x", "sport", "eco", "max"]),
             ("maker", ["Volta", "Kestrel", "Nordwagen", "Aurum", "Takara"]),
             [_col("horsepower", ["horsepower", "power"], 60, 600, ops=AVERAGE_ONLY),
              _col("top_speed", ["top speed", "maximum speed"], 120, 320, ops=AVERAGE_ONLY),
              _col("seats", ["seats"], 2, 9, countable=True)], None),
    "songs": (("song", "songs"), "song", ["song", "title"], lambda rng: _names(rng, _WORDS, _WORDS + _NOUNS),
              ("artist", ["The Lanterns", "Mira Sol", "Paper Boats", "Kofi Mensah", "Blue Harbour"]),
              [_col("length_seconds", ["length in seconds", "duration"], 90, 420, ops=AVERAGE_ONLY),
               _col("plays", ["plays", "streams"], 500, 99000, countable=True),
               _col("year", ["year", "release year"], 1960, 2024, ops=NO_AGGREGATE)], "track"),
    "films": (("film", "films"), "film", ["film", "title", "movie"], lambda rng: _names(rng, _WORDS, _WORDS + _TOPIC_WORDS),
              ("genre", ["Drama", "Comedy", "Thriller", "Documentary", "Western"]),
              [_col("runtime", ["runtime", "running time", "length"], 70, 190, ops=AVERAGE_ONLY),
               _col("budget_musd", ["budget", "budget in millions"], 1, 250),
               _col("awards", ["awards", "prizes"], 0, 14, countable=True)], None),
    "hotels": (("hotel", "hotels"), "hotel", ["hotel", "name"],
               lambda rng: "Hotel " + _names(rng, _PLACES + _ADJECTIVES), ("town", [p.title() for p in _PLACES[:8]]),
               [_col("rooms", ["rooms", "bedrooms"], 8, 400, countable=True),
                _col("floors", ["floors", "storeys"], 1, 30, countable=True, ops=AVERAGE_ONLY),
                _col("price_per_night", ["price per night", "nightly rate", "price"], 40, 600, ops=AVERAGE_ONLY)], None),
    "schools": (("school", "schools"), "school", ["school", "name"],
                lambda rng: _names(rng, _PLACES + _WORDS, ["academy", "high school", "college", "school"]),
                ("district", ["North", "South", "East", "West", "Central"]),
                [_col("students", ["students", "pupils"], 80, 2400, countable=True),
                 _col("teachers", ["teachers", "staff"], 6, 160, countable=True),
                 _col("founded", ["founding year", "year founded"], 1850, 2015, ops=NO_AGGREGATE)], "school_id"),
}
_HELD_OUT = {  # themes never drawn for training: their words, headers and shapes are new to a model
    "rivers": (("river", "rivers"), "river", ["river", "name"],
               lambda rng: rng.choice(["Avon", "Tamar", "Severn", "Loire", "Douro", "Tagus", "Elbe", "Oder", "Vistula", "Drava",
                                       "Sava", "Tisza", "Ebro", "Rhone", "Shannon", "Tweed", "Dee", "Mersey"]),
               ("country", [c.title() for c in _COUNTRIES]),
               [_col("length_km", ["length", "length in km"], 40, 1200, ops=AVERAGE_ONLY),
                _col("tributaries", ["tributaries"], 0, 40, countable=True),
                _col("bridges", ["bridges"], 1, 300, countable=True)], None),
    "planets": (("planet", "planets"), "planet", ["planet", "name"],
                lambda rng: rng.choice(["Kepler", "Gliese", "Trappist", "Wolf", "Ross", "Tau"]) + " " + rng.choice(["Prime", "Minor", "Major", "Nova"]),
                ("star_type", ["red dwarf", "yellow dwarf", "orange dwarf"]),
                [_col("moons", ["moons", "satellites"], 0, 30, countable=True),
                 _col("diameter_km", ["diameter", "width"], 2000, 140000, ops=AVERAGE_ONLY),
                 _col("orbit_days", ["orbital period", "days per orbit"], 3, 900, ops=AVERAGE_ONLY)], None),
    "mountains": (("mountain", "mountains"), "mountain", ["mountain", "peak", "name"],
                  lambda rng: "Mount " + rng.choice(["Ardent", "Corran", "Eldor", "Halvar", "Istra", "Kestrel", "Lomond", "Morvan",
                                                     "Orla", "Pelham", "Ravel", "Sorrel", "Tessin", "Varda"]),
                  ("mountain_range", ["Alps", "Andes", "Rockies", "Pyrenees", "Carpathians"]),
                  [_col("height_m", ["height", "elevation", "altitude"], 1500, 8800, ops=AVERAGE_ONLY),
                   _col("first_ascent", ["year of the first ascent", "first ascent"], 1780, 1990, ops=NO_AGGREGATE),
                   _col("routes", ["routes", "climbing routes"], 1, 45, countable=True)], None),
    "orders": (("order", "orders"), "customer", ["customer", "name"],
               lambda rng: f"{rng.choice(_FIRST).title()} {rng.choice(_LAST).title()}",
               ("status", ["shipped", "pending", "delivered", "returned"]),
               [_col("quantity", ["quantity", "items"], 1, 60, countable=True),
                _col("value_eur", ["order value", "value in euros", "amount"], 5, 900),
                _col("days_to_ship", ["days to ship", "shipping time"], 1, 20, ops=AVERAGE_ONLY)], "order_id"),
    "animals": (("animal", "animals"), "species", ["species", "animal", "name"],
                lambda rng: rng.choice(["Red Fox", "Brown Bear", "Grey Wolf", "Snow Leopard", "Sea Otter", "Barn Owl", "Green Turtle",
                                        "Giant Panda", "Harbour Seal", "Golden Eagle", "River Otter", "Arctic Hare"]),
                ("habitat", ["forest", "mountains", "coast", "grassland", "wetland"]),
                [_col("weight_kg", ["weight", "body weight"], 1, 600, ops=AVERAGE_ONLY),
                 _col("lifespan_years", ["lifespan", "life expectancy"], 2, 80, ops=AVERAGE_ONLY),
                 _col("offspring", ["offspring per year", "young per year"], 1, 12, countable=True, ops=AVERAGE_ONLY)], None),
}


def _spec_maker(spec):
    entity, key, key_phrases, make_key, text, pool, id_column = spec

    def make(rng, n_rows):
        return _generic(rng, n_rows, entity, key, key_phrases, lambda: make_key(rng), text, pool, id_column=id_column)

    return make


BROAD_THEMES = dict(THEMES, **{name: _spec_maker(spec) for name, spec in _BROAD.items()})
"""The training themes of the broad generator: the five original ones and eight more."""

HELD_OUT_THEMES = {name: _spec_maker(spec) for name, spec in _HELD_OUT.items()}
"""Themes that no training split draws: the "unseen themes" development split."""

_VALIDATION = {  # themes of the validation split only
    "bakeries": (("bakery", "bakeries"), "bakery", ["bakery", "name"],
                 lambda rng: rng.choice(["Crumb", "Flour", "Rye", "Hearth", "Yeast", "Butter", "Oat", "Honey"]) + " "
                 + rng.choice(["House", "Corner", "Works", "Loft"]),
                 ("speciality", ["Sourdough", "Pastry", "Bagels", "Pretzels"]),
                 [_col("loaves_per_day", ["loaves per day", "daily loaves"], 40, 900, countable=True),
                  _col("bread_price", ["bread price", "price of a loaf"], 2, 9, decimals=1, ops=AVERAGE_ONLY),
                  _col("year_established", ["year established"], 1890, 2020, ops=NO_AGGREGATE)], None),
    "volcanoes": (("volcano", "volcanoes"), "volcano", ["volcano", "name"],
                  lambda rng: rng.choice(["Pico", "Cerro", "Monte"]) + " " + rng.choice(["Azul", "Negro", "Alto", "Bravo", "Verde", "Fuego"]),
                  ("activity", ["active", "dormant", "extinct"]),
                  [_col("eruptions", ["recorded eruptions", "eruptions"], 0, 60, countable=True),
                   _col("summit_m", ["summit height", "summit"], 900, 6000, ops=AVERAGE_ONLY),
                   _col("last_eruption", ["year of the last eruption"], 1500, 2023, ops=NO_AGGREGATE)], None),
}
_TEST = {  # themes of the test split only, written before any model was scored on them
    "ships": (("ship", "ships"), "ship", ["ship", "vessel", "name"],
              lambda rng: "MV " + rng.choice(["Albatross", "Cormorant", "Puffin", "Petrel", "Gannet", "Kittiwake", "Tern", "Skua", "Fulmar", "Shearwater"]),
              ("home_port", ["Aberdeen", "Bilbao", "Gdynia", "Trieste", "Halifax"]),
              [_col("crew", ["crew", "crew members", "sailors"], 4, 80, countable=True),
               _col("tonnage", ["tonnage", "gross tonnage"], 300, 9000),
               _col("launched", ["launch year", "year launched"], 1950, 2022, ops=NO_AGGREGATE)], "hull_number"),
    "observatories": (("observatory", "observatories"), "observatory", ["observatory", "name"],
                      lambda rng: rng.choice(["Kalden", "Orvik", "Tamsin", "Ulmen", "Brisa", "Quell", "Sarn", "Vellum", "Corrin", "Haldor"]) + " Observatory",
                      ("hemisphere", ["northern", "southern"]),
                      [_col("telescopes", ["telescopes", "instruments"], 1, 14, countable=True),
                       _col("altitude_m", ["site altitude", "altitude in metres"], 100, 5000, ops=AVERAGE_ONLY),
                       _col("clear_nights", ["clear nights a year", "clear nights"], 60, 320, ops=AVERAGE_ONLY)], None),
    "festivals": (("festival", "festivals"), "festival", ["festival", "name"],
                  lambda rng: rng.choice(["Sunburst", "Tidewater", "Lantern", "Driftwood", "Meadowlark", "Ember", "Harbourlight"]) + rng.choice([" Fest", " Weekender"]),
                  ("month", ["June", "July", "August", "September"]),
                  [_col("stages", ["stages"], 1, 12, countable=True),
                   _col("bands", ["bands", "acts"], 5, 140, countable=True),
                   _col("ticket_price", ["ticket price", "price of a ticket"], 20, 300, ops=AVERAGE_ONLY)], None),
    "orchards": (("orchard", "orchards"), "orchard", ["orchard", "farm", "name"],
                 lambda rng: rng.choice(["Appleby", "Pearfield", "Cobnut", "Damson", "Quincey", "Medlar", "Bramley"]) + rng.choice([" Orchard", " Farm"]),
                 ("region", ["Kent", "Somerset", "Normandy", "Asturias"]),
                 [_col("harvest_tonnes", ["harvest in tonnes", "harvest"], 5, 400),
                  _col("acres", ["acres", "size in acres"], 3, 250, countable=True),
                  _col("planted", ["year planted", "planting year"], 1900, 2015, ops=NO_AGGREGATE)], None),
}
_TEST2 = {  # themes of the second test split only, written before any model was scored on it
    "lighthouses": (("lighthouse", "lighthouses"), "lighthouse", ["lighthouse", "light", "name"],
                    lambda rng: rng.choice(["Skerry", "Brannock", "Wexmoor", "Gullrock", "Penhallow", "Corbie", "Mizzen",
                                            "Selkie", "Fastnet", "Dunvore"]) + " Light",
                    ("coast", ["Atlantic", "Baltic", "Adriatic", "Irish Sea"]),
                    [_col("keepers", ["keepers", "lighthouse keepers"], 0, 12, countable=True),
                     _col("tower_height_m", ["tower height", "height of the tower"], 8, 60, ops=AVERAGE_ONLY),
                     _col("first_lit", ["year first lit", "first lighting"], 1700, 1990, ops=NO_AGGREGATE)], None),
    "vineyards": (("vineyard", "vineyards"), "vineyard", ["vineyard", "estate", "name"],
                  lambda rng: rng.choice(["Castel", "Domaine", "Quinta", "Bodega"]) + " "
                  + rng.choice(["Arnaud", "Ferreira", "Lorca", "Valier", "Montes", "Brivio", "Salgado"]),
                  ("grape", ["Riesling", "Tempranillo", "Merlot", "Albarino", "Syrah"]),
                  [_col("hectares", ["hectares", "area in hectares"], 2, 120),
                   _col("bottles_per_year", ["bottles a year", "bottles produced"], 2000, 90000, countable=True),
                   _col("first_vintage", ["first vintage", "year of the first vintage"], 1850, 2015, ops=NO_AGGREGATE)], None),
    "trains": (("train", "trains"), "service", ["service", "train", "name"],
               lambda rng: rng.choice(["Northern", "Coastal", "Alpine", "Midnight", "Capital", "Valley"]) + " "
               + rng.choice(["Arrow", "Express", "Sleeper", "Flyer", "Shuttle"]),
               ("terminus", ["Lyon", "Krakow", "Porto", "Bergen", "Graz"]),
               [_col("carriages", ["carriages", "coaches"], 3, 16, countable=True),
                _col("journey_minutes", ["journey time", "minutes per journey"], 25, 480, ops=AVERAGE_ONLY),
                _col("daily_departures", ["daily departures", "departures a day"], 1, 30, countable=True)], "train_no"),
    "parks": (("park", "parks"), "park", ["park", "name"],
              lambda rng: rng.choice(["Elmstead", "Fernbrook", "Larkhill", "Willowmere", "Thornbury", "Ashcombe", "Brackenside", "Hollins", "Marlow", "Stanmoor"]) + " Park",
              ("borough", ["Hackney", "Camden", "Lambeth", "Islington"]),
              [_col("trees", ["trees", "number of trees"], 50, 4000, countable=True),
               _col("area_ha", ["area", "size in hectares"], 2, 300),
               _col("opened", ["opening year", "year opened"], 1840, 2020, ops=NO_AGGREGATE)], None),
}
_TEST3 = {  # themes of the third test split only, written before any model was scored on it
    "museums": (("museum", "museums"), "museum", ["museum", "gallery", "name"],
                lambda rng: rng.choice(["Ashmole", "Horniman", "Whitworth", "Bowes", "Hunterian", "Fitzroy", "Brunel",
                                        "Tullie"]) + rng.choice([" Museum", " Gallery"]),
                ("collection", ["art", "science", "maritime", "folk life"]),
                [_col("exhibits", ["exhibits", "objects on show"], 200, 9000, countable=True),
                 _col("visitors_k", ["visitors in thousands", "yearly visitors"], 10, 900),
                 _col("charter_year", ["charter year", "year of its charter"], 1750, 2010, ops=NO_AGGREGATE)], None),
    "glaciers": (("glacier", "glaciers"), "glacier", ["glacier", "name"],
                 lambda rng: rng.choice(["Aletsch", "Morteratsch", "Jostedal", "Pasterze", "Tasman", "Perito",
                                         "Svinafell", "Breidamerkur", "Hubbard", "Baltoro"]) + " Glacier",
                 ("continent", ["Europe", "Asia", "South America", "Oceania"]),
                 [_col("ice_thickness_m", ["ice thickness", "thickness of the ice"], 50, 900, ops=AVERAGE_ONLY),
                  _col("retreat_m", ["retreat", "metres of retreat"], 5, 120),
                  _col("surveys", ["surveys", "survey expeditions"], 1, 40, countable=True)], None),
    "libraries": (("library", "libraries"), "library", ["library", "branch", "name"],
                  lambda rng: rng.choice(["Carnegie", "Mitchell", "Linen Hall", "Rylands", "Marsh", "Chetham",
                                          "Gladstone", "Innerpeffray", "Armagh", "Leighton"]) + " Library",
                  ("county", ["Cork", "Fife", "Devon", "Antrim"]),
                  [_col("volumes", ["volumes", "volumes held"], 5000, 400000, countable=True),
                   _col("reading_desks", ["reading desks", "desks"], 10, 200, countable=True),
                   _col("weekly_loans", ["weekly loans", "loans a week"], 50, 3000)], None),
    "ferries": (("ferry", "ferries"), "ferry", ["ferry", "boat", "name"],
                lambda rng: rng.choice(["Island", "Harbour", "Sound", "Firth", "Strait"]) + " "
                + rng.choice(["Rover", "Wanderer", "Clipper", "Runner", "Princess"]),
                ("route", ["Oban to Mull", "Dover to Calais", "Helsinki to Tallinn", "Split to Hvar"]),
                [_col("vehicle_spaces", ["vehicle spaces", "vehicles carried"], 10, 300, countable=True),
                 _col("crossing_minutes", ["crossing time", "minutes per crossing"], 20, 240, ops=AVERAGE_ONLY),
                 _col("sailings_per_day", ["sailings a day", "daily sailings"], 1, 20, countable=True)], "fleet_no"),
}
_TEST4 = {  # themes of the fourth test split only, written before any model was scored on it
    "castles": (("castle", "castles"), "castle", ["castle", "fortress", "name"],
                lambda rng: rng.choice(["Harlech", "Bamburgh", "Conwy", "Dunnottar", "Kilkenny", "Alnwick", "Caerphilly",
                                        "Raglan", "Tantallon", "Pembroke"]) + " Castle",
                ("condition", ["ruined", "restored", "inhabited"]),
                [_col("towers", ["towers", "defensive towers"], 1, 16, countable=True),
                 _col("moat_width_m", ["moat width", "width of the moat"], 3, 40, ops=AVERAGE_ONLY),
                 _col("built", ["year built", "building year"], 1050, 1600, ops=NO_AGGREGATE)], None),
    "apiaries": (("apiary", "apiaries"), "apiary", ["apiary", "bee yard", "name"],
                 lambda rng: rng.choice(["Clover", "Heathside", "Lindenhurst", "Marigold", "Thistledown", "Sorrel",
                                         "Foxglove", "Bramblewick", "Yarrow", "Meadowsweet"]) + " Apiary",
                 ("honey", ["heather", "clover", "acacia", "lime blossom"]),
                 [_col("hives", ["hives", "beehives"], 4, 120, countable=True),
                  _col("honey_kg", ["honey harvested", "kilograms of honey"], 20, 2500),
                  _col("licensed", ["licence year", "year licensed"], 1950, 2020, ops=NO_AGGREGATE)], None),
    "marathons": (("marathon", "marathons"), "marathon", ["marathon", "race", "name"],
                  lambda rng: rng.choice(["Rotterdam", "Valencia", "Seville", "Turin", "Ljubljana", "Dublin", "Frankfurt",
                                          "Kosice", "Tallinn", "Vilnius"]) + " Marathon",
                  ("season", ["spring", "autumn", "winter"]),
                  [_col("runners", ["runners", "finishers"], 500, 40000, countable=True),
                   _col("winning_time_min", ["winning time", "minutes for the winner"], 125, 160, ops=AVERAGE_ONLY),
                   _col("first_held", ["first edition", "year first held"], 1900, 2015, ops=NO_AGGREGATE)], None),
    "airports": (("airport", "airports"), "airport", ["airport", "name"],
                 lambda rng: rng.choice(["Gatwick", "Schiphol", "Linate", "Barajas", "Orly", "Kastrup", "Vantaa",
                                         "Arlanda", "Gardermoen", "Keflavik"]) + " Airport",
                 ("hub_airline", ["KLM", "Iberia", "SAS", "Finnair", "Icelandair"]),
                 [_col("lounges", ["lounges", "passenger lounges"], 1, 14, countable=True),
                  _col("gates", ["gates", "boarding gates"], 10, 220, countable=True),
                  _col("daily_flights", ["daily flights", "flights a day"], 40, 1400)], "airport_no"),
}
VALIDATION_THEMES = {name: _spec_maker(spec) for name, spec in _VALIDATION.items()}
"""Themes of the validation split only: checkpoints are chosen on tables no training split draws."""

TEST_THEMES = {name: _spec_maker(spec) for name, spec in _TEST.items()}
"""Themes of the test split only."""

TEST2_THEMES = {name: _spec_maker(spec) for name, spec in _TEST2.items()}
"""Themes of the second test split only (no model had been scored on it when it was written)."""

TEST3_THEMES = {name: _spec_maker(spec) for name, spec in _TEST3.items()}
"""Themes of the third test split only (no model had been scored on it when it was written)."""

TEST4_THEMES = {name: _spec_maker(spec) for name, spec in _TEST4.items()}
"""Themes of the fourth test split only (no model had been scored on it when it was written)."""

RANDOM_SCHEMA = "random schema"
RANDOM_SCHEMA_SHARE = 0.4
"""The share of training tables whose entity, headers and names are words drawn from the novel of
notebook 01: no header can be memorised, so the model must match the question's words to the
table's. The held-out themes' words and the held-out templates' words are never drawn."""


def theme_words(specs):
    """The lower-case words of themes given as their specs (as in _HELD_OUT): entity, key and its phrases,
    text column and its values, id column, every header and phrase, and 50 drawn names."""
    import re

    words = set()
    for entity, key, key_phrases, make_key, (text_header, text_values), pool, id_column in specs.values():
        rng = random.Random(0)
        phrases = [*entity, key, *key_phrases, text_header, *text_values, id_column or "", *(make_key(rng) for _ in range(50))]
        for column in pool:
            phrases += [column.header, *column.phrases]
        words |= {w for phrase in phrases for w in re.findall(r"[a-z]+", phrase.lower())}
    return words


def never_trained_words(tokenizer, n=16):
    """Words that are single tokens of `tokenizer`'s vocabulary but that no training table or question holds:
    words of the novel of 11 letters or more (random schemas draw words of 4 to 10), in no theme and no
    template. The `n` most frequent, most frequent first (ties alphabetical). Their rows of the embedding
    matrix were never updated by question answering. Raises ValueError when fewer than `n` qualify."""
    import collections
    import re

    from utils import data_path

    text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8").lower()
    counts = collections.Counter(w for w in re.findall(r"[a-z]+", text) if len(w) >= 11)
    banned = theme_words(_theme_specs())
    for sets in TEMPLATES.values():
        banned |= {w for texts in sets.values() for t, _ in texts for w in re.findall(r"[a-z]+", t.lower())}
    vocab = tokenizer.get_vocab()
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if w in vocab and w not in banned]
    if len(words) < n:
        raise ValueError(f"never_trained_words: only {len(words)} words qualify, {n} asked")
    return words[:n]


def renamed_variants(lookups, *, numeric_header="pages", text_header="genre", name="Ana Silva",
                     decoys=("seats", "cuisine", "Ben Meyer"), schema=("abode", "abroad", "Absolutely Accent"),
                     never_trained=(), never_trained_decoys=False):
    """Lookups by name asked several ways (:func:`renamed_lookup`): as generated; with the gold column renamed to
    a training header (`numeric_header`, or `text_header` for a column of words); with the gold row renamed to a
    training-style name (the employees theme's first and last names); with both; with both plus decoys: another
    column renamed to a second training header of the same type and another row's name to a second
    training-style name (`decoys`: numeric header, text header, name), so that the familiar words are no longer
    the only ones in the table; with both words drawn from the random schemas' words (`schema`: numeric header,
    text header, name), words that training tables use with no fixed meaning; and, for every four words of
    `never_trained` (:func:`never_trained_words`), with both words never seen in training (numeric header, text
    header, and a name of the last two, title-cased); with `never_trained_decoys`, each such set also with decoys
    taken from the next set's words, so that the table holds two never-trained headers and two never-trained
    names. {variant: [Example]}."""
    def header(e, numeric, text):
        return numeric if _is_number(e.table.iat[e.coordinates[0]]) else text

    def swap(numeric, text, new_name):
        return [renamed_lookup(e, header=header(e, numeric, text), name=new_name) for e in lookups]

    if len(never_trained) % 4:
        raise ValueError(f"never_trained takes words in fours (numeric header, text header, name), got {len(never_trained)}")
    both = swap(numeric_header, text_header, name)
    variants = {"as generated": list(lookups),
                "training header": [renamed_lookup(e, header=header(e, numeric_header, text_header)) for e in lookups],
                "training-style name": [renamed_lookup(e, name=name) for e in lookups],
                "both": both,
                "both, with decoys": [_with_decoys(e, name, header(e, *decoys[:2]), decoys[2]) for e in both],
                "random-schema words": swap(*schema)}
    sets = [never_trained[k:k + 4] for k in range(0, len(never_trained), 4)]
    for k, (numeric, text, first, last) in enumerate(sets):
        name_k = f"{first.title()} {last.title()}"
        variants[f"never-trained words {k + 1}"] = swap(numeric, text, name_k)
        if never_trained_decoys:
            d_numeric, d_text, d_first, d_last = sets[(k + 1) % len(sets)]
            variants[f"never-trained words {k + 1}, with decoys"] = [
                _with_decoys(e, name_k, header(e, d_numeric, d_text), f"{d_first.title()} {d_last.title()}")
                for e in variants[f"never-trained words {k + 1}"]]
    if never_trained_decoys and len(sets) < 2:
        raise ValueError("never_trained_decoys needs at least two sets of four never-trained words")
    return variants


def _with_decoys(example, name, decoy_header, decoy_name):
    """`example` (a lookup whose gold row holds `name`) with a second column headed `decoy_header`, of the gold
    cell's type where the table has one, and the next row's name changed to `decoy_name`."""
    (row, col), = example.coordinates
    table = example.table.copy()
    name_col = next((c for c in range(table.shape[1]) if table.iat[row, c] == name), None)
    others = [c for c in range(table.shape[1]) if c not in (col, name_col)]
    if name_col is None or not others:
        raise ValueError(f"_with_decoys: no row named {name!r} or no third column in {list(table.columns)}")
    same = [c for c in others if _is_number(table.iat[row, c]) == _is_number(table.iat[row, col])]
    table = table.rename(columns={table.columns[(same or others)[0]]: decoy_header})
    table.iat[(row + 1) % len(table), name_col] = decoy_name
    return Example(table, example.question, example.aggregator, example.coordinates, example.pandas, example.gold,
                   example.kind, example.theme)


def renaming_test(pipe, variants):
    """The variants of :func:`renamed_variants` asked of `pipe`: a frame of kind, table and right or wrong per
    variant, paired question by question."""
    lookups = variants["as generated"]
    frame = pd.DataFrame({"kind": [e.kind for e in lookups], "table": table_ids(lookups)})
    for variant, examples in variants.items():
        frame[variant] = evaluate(pipe, examples)["correct"].to_numpy()
    return frame


def renaming_table(renamed, variants):
    """One row per variant of :func:`renaming_test`'s frame: its first question, its share right, and its
    difference from "as generated" on the same questions (:func:`utils.evaluation.mcnemar`, tables as groups)."""
    from .evaluation import mcnemar

    rows = {}
    for variant, examples in variants.items():
        paired = mcnemar(renamed[variant], renamed["as generated"], groups=renamed["table"])
        rows[variant] = {"first question": examples[0].question, "right": f"{paired.a:.0%}",
                         "minus as generated": "" if variant == "as generated" else str(paired)}
    return pd.DataFrame(rows).T


def _theme_specs():
    return {**_BROAD, **_HELD_OUT, **_VALIDATION, **_TEST, **_TEST2, **_TEST3, **_TEST4}


def renamed_lookup(example, *, header=None, name=None):
    """A copy of a lookup by name with the words the model has to link swapped for words it was trained on.
    `header` replaces the gold column's header in the table and, in the question, the words that name that
    column (its header or one of its phrases); `name` replaces the gold row's name in the table and in the
    question, in whichever spelling the question used (as written, lower case, hyphenated). The gold answer is
    unchanged. Raises ValueError when the example is no lookup or its question names neither in a way found here."""
    import re

    if example.kind != "lookup" or len(example.coordinates) != 1:
        raise ValueError(f"renamed_lookup: not a lookup of one cell: {example.question!r}")
    (row, col), = example.coordinates
    table, question = example.table.copy(), example.question
    if header is not None:
        old = table.columns[col]
        phrases = [p for spec in _theme_specs().values() for column in spec[5] if column.header == old for p in column.phrases]
        words = sorted({old.replace("_", " "), *phrases}, key=len, reverse=True)
        found = next((w for w in words if re.search(rf"\b{re.escape(w)}\b", question, re.I)), None)
        if found is None:
            raise ValueError(f"renamed_lookup: the question {question!r} names column {old!r} by none of {words}")
        question = re.sub(rf"\b{re.escape(found)}\b", header.replace("_", " "), question, count=1, flags=re.I)
        table = table.rename(columns={old: header})
    if name is not None:
        for c in range(table.shape[1]):
            value = str(table.iat[row, c])
            lower, hyphenated = value.lower(), "-".join(value.lower().split())
            spellings = [value, lower, hyphenated, lower.capitalize(), hyphenated.capitalize()]  # a question may start with it
            found = next((v for v in spellings if not _is_number(v) and re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", question)), None)
            if found:
                question = question.replace(found, name, 1)
                table.iat[row, c] = name
                break
        else:
            raise ValueError(f"renamed_lookup: the question {question!r} names no cell of row {row}")
    return Example(table, question, example.aggregator, example.coordinates, example.pandas, example.gold,
                   example.kind, example.theme)


def schema_words_of(themes, templates=None):
    """The words of the named themes (:func:`theme_words`), and of the `templates` set of :data:`TEMPLATES` if
    one is named, that the training's random schemas may draw: e.g. those of TEST2_THEMES, whose words were not
    kept out of the schemas, or of the "test3" phrasings, written after the last training."""
    import re

    specs = _theme_specs()
    unknown = [name for name in themes if name not in specs]
    if unknown:
        raise ValueError(f"schema_words_of: no theme {unknown[0]!r}; it knows {sorted(specs)}")
    if templates is not None and templates not in TEMPLATES["lookup"]:
        raise ValueError(f"schema_words_of: no template set {templates!r}; it knows {list(TEMPLATES['lookup'])}")
    words = theme_words({name: specs[name] for name in themes})
    if templates is not None:
        words |= {w for sets in TEMPLATES.values() for t, _ in sets[templates] for w in re.findall(r"[a-z]+", t.lower())}
    return sorted(words & set(schema_words()))


def schema_words():
    """Words of the novel (4-10 letters, seen at least 3 times) that no held-out theme, no template
    and no held-out phrasing uses; cached."""
    global _SCHEMA_WORDS
    if _SCHEMA_WORDS is None:
        import collections
        import re

        from utils import data_path

        text = data_path("pride_and_prejudice.txt").read_text(encoding="utf-8").lower()
        counts = collections.Counter(w for w in re.findall(r"[a-z]+", text) if 4 <= len(w) <= 10)
        banned = theme_words({**_HELD_OUT, **_VALIDATION, **_TEST})
        for sets in TEMPLATES.values():  # the third and fourth tests' phrasings came after the last training
            banned |= {w for which, texts in sets.items() if which not in ("test3", "test4") for t, _ in texts
                       for w in re.findall(r"[a-z]+", t.lower())}
        _SCHEMA_WORDS = sorted(w for w, n in counts.items() if n >= 3 and w not in banned)
    return _SCHEMA_WORDS


_SCHEMA_WORDS = None


def _plural(word):
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _random_schema(rng, n_rows):
    """A table of the random schema: an entity, a key, one text column and two or three numeric ones,
    all named by random words of the novel."""
    words = schema_words()
    singular = rng.choice([w for w in words if not w.endswith("s")])
    headers = rng.sample([w for w in words if w != singular], 6)
    key = rng.choice([singular, "name"])
    pool = []
    for header in headers[2:]:
        if rng.random() < 0.3:
            header = f"{header}_{rng.choice(words)}"
        low = rng.choice([0, 1, 5, 10, 100, 1000, 1800])
        high = low + rng.choice([15, 40, 90, 300, 900, 5000, 90000])
        pool.append(_col(header, [header.replace("_", " ")], low, high, decimals=int(rng.random() < 0.15),
                         countable=rng.random() < 0.5))
    text_values = [w.title() for w in rng.sample(words, 4)]
    make_key = lambda: _title(rng.sample(words, rng.choice([1, 2, 2]))).title()  # noqa: E731
    id_column = rng.choice([None, None, "id", f"{singular}_number"])
    return _generic(rng, n_rows, (singular, _plural(singular)), key, [key, "name"] if key != "name" else ["name"],
                    make_key, (headers[1], text_values), pool, id_column=id_column)


TRAIN_THEMES = dict(BROAD_THEMES, **{RANDOM_SCHEMA: _random_schema})
"""What the training split draws: the thirteen broad themes and the random schema."""

# Templates per question kind: "train" ones may appear in training, "held out" ones never do.
# Each is (text, tag): tag "countable" asks for a column one counts ("How many goals ..."), ">" and
# "<" give a condition's direction. The original generator's templates are all among the train ones.
TEMPLATES = {
    "lookup": {
        "train": [("What is the {phrase} of {key}?", ""), ("What's the {phrase} for {key}?", ""),
                  ("Tell me the {phrase} of {key}.", ""), ("How many {phrase} does {key} have?", "countable"),
                  ("What {phrase} does {key} have?", ""), ("What is {key}'s {phrase}?", ""),
                  ("Give me the {phrase} of {key}.", ""), ("Show the {phrase} for {key}.", ""),
                  ("Which {phrase} does the {singular} {key} have?", ""), ("How many {phrase} for {key}?", "countable"),
                  ("{key}: what is the {phrase}?", ""), ("Look up the {phrase} of {key}.", ""),
                  ("Can you give me the {phrase} of {key}?", ""), ("What {phrase} is listed for {key}?", ""),
                  ("Find the {phrase} of {key}.", ""), ("{key} has how many {phrase}?", "countable"),
                  ("How many {phrase} did {key} have?", "countable"), ("The {phrase} of {key}?", "")],
        "validation": [("Do you know the {phrase} of {key}?", ""), ("What {phrase} is recorded for {key}?", ""),
                       ("Tell me how many {phrase} {key} has.", "countable"), ("Which is the {phrase} of {key}?", "")],
        "held out": [("How many {phrase} has {key} got?", "countable"), ("Could you tell me the {phrase} of {key}?", ""),
                     ("For {key}, what is the {phrase}?", ""), ("I need the {phrase} of {key}.", ""),
                     ("What does the table give as the {phrase} of {key}?", "")],
        "test": [("Please look up {key}'s {phrase}.", ""), ("What figure does the table show for the {phrase} of {key}?", ""),
                 ("{key} -- {phrase}?", ""), ("How many {phrase} are listed against {key}?", "countable")],
        "test2": [("What value does the table record as {key}'s {phrase}?", ""), ("Read off the {phrase} of {key}.", ""),
                  ("How many {phrase} belong to {key}?", "countable"), ("As for {key}, its {phrase} is what?", "")],
        "test3": [("What does the table list as the {phrase} of {key}?", ""), ("Report the {phrase} for {key}.", ""),
                  ("How many {phrase} does {key} show?", "countable"), ("Regarding {key}, what {phrase} is given?", "")],
        "test4": [("Tell me {key}'s {phrase}, please.", ""), ("Which {phrase} is shown against {key}?", ""),
                  ("What number of {phrase} is given for {key}?", "countable"), ("Look at {key}: what {phrase}?", "")],
    },
    "lookup by id": {
        "train": [("What's the {phrase} in {singular} {id}?", ""), ("What is the {phrase} of {singular} {id}?", ""),
                  ("Which {phrase} has {singular} {id}?", ""), ("What is the {phrase} of {singular} number {id}?", ""),
                  ("Name the {phrase} of {singular} {id}.", ""), ("Give the {phrase} for {singular} {id}.", ""),
                  ("Find the {phrase} of {singular} {id}.", ""), ("{singular} {id}: what is the {phrase}?", "")],
        "validation": [("For {singular} {id}, which {phrase} is it?", ""), ("Which {phrase} is {singular} {id}?", "")],
        "held out": [("Which {phrase} belongs to {singular} {id}?", ""), ("Tell me the {phrase} for {singular} {id}.", ""),
                     ("What {phrase} does {singular} {id} have?", "")],
        "test": [("Who or what is {singular} {id}, by {phrase}?", ""), ("{singular} {id} is which {phrase}?", "")],
        "test2": [("Which {phrase} goes with {singular} {id}?", ""), ("Identify {singular} {id} by its {phrase}.", "")],
        "test3": [("Number {id} among the {plural}: which {phrase}?", ""), ("State the {phrase} of {singular} {id}.", "")],
        "test4": [("The {singular} numbered {id} has which {phrase}?", ""), ("Give the {phrase} belonging to {singular} {id}.", "")],
    },
    "sum": {
        "train": [("What is the total {phrase}?", ""), ("What is the total number of {phrase}?", "countable"),
                  ("What is the sum of the {phrase}?", ""), ("How many {phrase} are there in total?", "countable"),
                  ("What are the {phrase} of all {plural} added up?", ""), ("What is the combined {phrase}?", ""),
                  ("What's the combined {phrase} of all {plural}?", ""), ("What do the {phrase} add up to?", ""),
                  ("What is the {phrase} of all {plural} together?", ""), ("Total {phrase}?", ""),
                  ("Sum of the {phrase}?", ""), ("How many {phrase} do the {plural} have in total?", "countable"),
                  ("Add the {phrase} together.", ""), ("What is the {phrase} of the {plural} combined?", ""),
                  ("How many {phrase} are there altogether?", "countable")],
        "validation": [("What is the {phrase} summed over all {plural}?", ""), ("Add up the {phrase}.", ""),
                       ("How many {phrase} in all?", "countable")],
        "held out": [("If you add up the {phrase}, what do you get?", ""), ("What is the overall {phrase}?", ""),
                     ("Give me the grand total of the {phrase}.", ""),
                     ("Altogether, how many {phrase} do the {plural} have?", "countable")],
        "test": [("Adding every {singular} together, what is the {phrase}?", ""), ("Work out the {phrase} for all the {plural} put together.", ""),
                 ("What {phrase} do all the {plural} account for between them?", "")],
        "test2": [("Tally up the {phrase} across every {singular}.", ""), ("What figure do you reach by totting up the {phrase}?", ""),
                  ("How many {phrase} are there across the whole table?", "countable")],
        "test3": [("Summing over all the {plural}, what is the {phrase}?", ""), ("What is the {phrase} when every row is added?", ""),
                  ("How many {phrase} do the listed {plural} amount to?", "countable")],
        "test4": [("What do all the {phrase} come to together?", ""), ("Combined across the table, how many {phrase} are there?", "countable"),
                  ("Add every {singular}'s {phrase}: what total results?", "")],
    },
    "average": {
        "train": [("What is the average {phrase}?", ""), ("What is the mean {phrase}?", ""),
                  ("What is the average {phrase} per {singular}?", ""), ("On average, what is the {phrase} of a {singular}?", ""),
                  ("What's the mean {phrase} of the {plural}?", ""), ("Average {phrase}?", ""),
                  ("What is the {phrase} on average?", ""), ("What is the average {phrase} across all {plural}?", ""),
                  ("How many {phrase} does a {singular} have on average?", "countable"),
                  ("What is the {phrase} per {singular} on average?", ""), ("Mean {phrase}?", "")],
        "validation": [("What is the {phrase}, averaged over the {plural}?", ""), ("Give the average {phrase}.", "")],
        "held out": [("What's the {phrase} of a typical {singular}, taking the mean?", ""), ("Compute the mean of the {phrase}.", ""),
                     ("What is the arithmetic mean of the {phrase}?", "")],
        "test": [("Across the {plural}, what is the {phrase} on a typical average?", ""), ("Work out the mean {phrase}.", ""),
                 ("Averaging over every {singular}, what {phrase} do you get?", "")],
        "test2": [("Taking every {singular} into account, what is the mean {phrase}?", ""),
                  ("What is the {phrase} of a {singular}, on average across the table?", ""),
                  ("Divide the combined {phrase} by the number of {plural}: what is it?", "")],
        "test3": [("What {phrase} does the average {singular} have?", ""), ("Find the mean value of the {phrase}.", ""),
                  ("Per {singular}, what is the typical {phrase} when averaged?", "")],
        "test4": [("What is the typical {phrase}, as a mean over the {plural}?", ""), ("Average out the {phrase}.", ""),
                  ("What mean {phrase} do the {plural} have?", "")],
    },
    "count with condition": {
        "train": [("How many {plural} have more than {v} {phrase}?", ">"), ("How many {plural} have {phrase} above {v}?", ">"),
                  ("How many {plural} have {phrase} greater than {v}?", ">"), ("How many {plural} have less than {v} {phrase}?", "<"),
                  ("How many {plural} have {phrase} below {v}?", "<"), ("How many {plural} have fewer than {v} {phrase}?", "<"),
                  ("How many {plural} have a {phrase} higher than {v}?", ">"), ("How many {plural} have a {phrase} lower than {v}?", "<"),
                  ("For how many {plural} is the {phrase} more than {v}?", ">"), ("For how many {plural} is the {phrase} lower than {v}?", "<"),
                  ("How many {plural} have over {v} {phrase}?", ">"), ("How many {plural} have under {v} {phrase}?", "<"),
                  ("Count the {plural} with {phrase} above {v}.", ">"), ("Number of {plural} with {phrase} below {v}?", "<"),
                  ("How many {plural} show more than {v} {phrase}?", ">"), ("Count how many {plural} have {phrase} under {v}.", "<"),
                  ("How many of the {plural} have {phrase} over {v}?", ">"), ("How many {plural} have a {phrase} beneath {v}?", "<")],
        "validation": [("How many {plural} show {phrase} above {v}?", ">"), ("What number of {plural} have {phrase} greater than {v}?", ">"),
                       ("How many {plural} have only under {v} {phrase}?", "<")],
        "held out": [("In how many {plural} does the {phrase} exceed {v}?", ">"), ("Of the {plural}, how many have more than {v} {phrase}?", ">"),
                     ("How many {plural} are there with {phrase} smaller than {v}?", "<"),
                     ("How many {plural} have a {phrase} of less than {v}?", "<")],
        "test": [("Which number of {plural} go beyond {v} in {phrase}?", ">"), ("Count every {singular} whose {phrase} tops {v}.", ">"),
                 ("How many {plural} stay below {v} in {phrase}?", "<"), ("Count every {singular} with {phrase} short of {v}.", "<")],
        "test2": [("How many {plural} top {v} when it comes to {phrase}?", ">"), ("What count of {plural} have {phrase} above {v}?", ">"),
                  ("How many {plural} come in under {v} for {phrase}?", "<"), ("For how many {plural} does the {phrase} not reach {v}?", "<")],
        "test3": [("How many {plural} exceed {v} in {phrase}?", ">"), ("Count the {plural} whose {phrase} is over {v}.", ">"),
                  ("How many {plural} fall short of {v} {phrase}?", "<"), ("Give the number of {plural} recording {phrase} below {v}.", "<")],
        "test4": [("How many {plural} have {phrase} exceeding {v}?", ">"), ("Count the {plural} that have more {phrase} than {v}.", ">"),
                  ("How many {plural} have {phrase} that is less than {v}?", "<"), ("Count the {plural} with fewer {phrase} than {v}.", "<")],
    },
    "count rows": {
        "train": [("How many {plural} are there?", ""), ("How many {plural} does the table list?", ""),
                  ("What is the number of {plural}?", ""), ("How many rows does the table have?", ""),
                  ("Count the {plural}.", ""), ("How many {plural} are listed?", ""), ("How many {plural} are in the table?", ""),
                  ("How many {plural} can you see?", ""), ("How many {plural} does this table have?", ""),
                  ("Number of {plural}?", ""), ("How many {plural} are shown?", ""), ("Tell me how many {plural} there are.", ""),
                  ("What's the number of {plural} listed?", ""), ("How many different {plural} are there?", "")],
        "validation": [("How many {plural} does it list?", ""), ("Give the number of {plural}.", ""),
                       ("How many {plural} are shown in the table?", "")],
        "held out": [("How many {plural} do we have here?", ""), ("What's the count of {plural}?", ""),
                     ("In total, how many {plural} appear?", "")],
        "test": [("How many {plural} make up this table?", ""), ("Count up the {plural}, please.", ""),
                 ("What is the tally of {plural}?", "")],
        "test2": [("How many {plural} are recorded here?", ""), ("What is the size of this list of {plural}?", ""),
                  ("How many entries for {plural} does the table contain?", "")],
        "test3": [("How many {plural} does this list hold?", ""), ("Give a count of the {plural}.", ""),
                  ("How many {plural} appear in the table?", "")],
        "test4": [("How many {plural} are in this list?", ""), ("Count all the {plural} in the table.", ""),
                  ("What number of {plural} does the table hold?", "")],
    },
}

SPLITS = {
    "train": (TRAIN_THEMES, "train", 101),
    "validation": ((BROAD_THEMES, VALIDATION_THEMES), "validation", 102),
    "in template": (BROAD_THEMES, "train", 103),
    "unseen phrasings": (BROAD_THEMES, "held out", 104),
    "unseen themes": (HELD_OUT_THEMES, "train", 105),
    "test": ((BROAD_THEMES, TEST_THEMES), "test", 2061),
    "test2": ((BROAD_THEMES, TEST2_THEMES), "test2", 3079),
    "test3": ((BROAD_THEMES, TEST3_THEMES), "test3", 5113),
    "test4": ((BROAD_THEMES, TEST4_THEMES), "test4", 6427),  # of seeds 6421-6430, the one whose new themes are most even
}
"""Split name -> (themes, template set, default seed). Training draws the thirteen themes and, for
RANDOM_SCHEMA_SHARE of its tables, a random schema. "validation" asks, in a set of phrasings of its
own, about tables drawn half from the thirteen themes and half from VALIDATION_THEMES, so that a
checkpoint is chosen for phrasings and tables it has not seen. Three development splits, looked at
while the generator and the training were designed: "in template" (new tables of the thirteen, in
the training templates), "unseen phrasings" (the thirteen themes, held-out templates), "unseen
themes" (HELD_OUT_THEMES, training templates). "test" asks, in phrasings of its own ("test"
templates), about tables drawn half from the thirteen themes and half from TEST_THEMES; it was
written down before any model was scored on it, and is scored once. "test2" does the same with
TEST2_THEMES and "test2" templates; it was written after the first test had been looked at, before
the fifth training stage's models (three seeds) were scored on anything but validation. "test3" does the same
with TEST3_THEMES and "test3" templates; it was written after the second test had been read, before any model, as
shipped or with its untrained embedding rows redrawn (with_redrawn_rows), was scored on it. "test4", with
TEST4_THEMES and "test4" templates, was written after the third had been scored, before any model pre-trained by
scripts/tapas_pretrain.py was scored on anything. When themes is a pair of theme
dicts, each table first draws one of the two, then a theme from it."""


def _pick(rng, kind, which, countable=True):
    options = [t for t in TEMPLATES[kind][which] if countable or t[1] != "countable"]
    return rng.choice(options)


def _phrase(rng, name, column):
    return rng.choice(list(column.phrases) + _SYNONYMS.get(name, []))


def _countable(name, column):
    return column.countable or name in _COUNTABLE


def _fill(text, schema, **values):
    singular, plural = schema["entity"]
    question = text.format(singular=singular, plural=plural, **values)
    return question[:1].upper() + question[1:]


def _broad_lookup(frame, schema, numeric, rng, which, row):
    """(question, aggregator, coordinates, code, kind) of a lookup by name of row ``row``."""
    key = schema["key"]
    text_columns = [c for c in frame.columns if c not in numeric and c not in (key, schema.get("id"))]
    if text_columns and rng.random() < 0.25:  # now and then the text column
        name, count_ok = rng.choice(text_columns), False
        phrase = name.replace("_", " ")
    else:
        name, column = rng.choice(sorted(numeric.items()))
        count_ok, phrase = _countable(name, column), _phrase(rng, name, column)
    text, _ = _pick(rng, "lookup", which, count_ok)
    if which == "train" and name in numeric and numeric[name].lookup and rng.random() < 0.3:
        text = rng.choice(numeric[name].lookup)  # a column's own wording ("On which page does ... start?")
    key_value = frame[key].iat[row]
    question = _fill(text, schema, phrase=phrase, key=_key_variant(rng, key_value), entity=schema["entity"][0])
    code = f'df.loc[df["{key}"] == {key_value!r}, "{name}"].item()'
    return question, "NONE", [(row, list(frame.columns).index(name))], code, "lookup"


def broad_questions(frame, schema, numeric, rng, which="train"):
    """Every question kind once for this table, phrased with the ``which`` templates ("train" or
    "held out"), naming columns by any of their phrases and synonyms."""
    if which not in TEMPLATES["lookup"]:
        raise ValueError(f"which must be one of {list(TEMPLATES['lookup'])}, got {which!r}")
    table = prepare_table(frame)
    col = {name: i for i, name in enumerate(frame.columns)}
    key = schema["key"]
    out = []

    def add(question, aggregator, coordinates, code, kind):
        gold = run_pandas(code, frame)
        out.append(Example(table, question, aggregator, sorted(coordinates), code, gold, kind))

    fill = lambda text, **values: _fill(text, schema, **values)  # noqa: E731
    add(*_broad_lookup(frame, schema, numeric, rng, which, rng.randrange(len(frame))))

    if schema.get("id"):
        row = rng.randrange(len(frame))
        ident = int(frame[schema["id"]].iat[row])
        text, _ = _pick(rng, "lookup by id", which)
        add(fill(text, phrase=rng.choice(schema["key_phrases"]), id=ident), "NONE", [(row, col[key])],
            f'df.loc[df["{schema["id"]}"] == {ident}, "{key}"].item()', "lookup by id")

    for kind, aggregator, method in (("sum", "SUM", "sum"), ("average", "AVERAGE", "mean")):
        eligible = sorted((n, c) for n, c in numeric.items() if kind in c.operations)
        if not eligible:  # nothing here that one would add up (years, start pages) or average
            continue
        name, column = rng.choice(eligible)
        text, _ = _pick(rng, kind, which, _countable(name, column))
        add(fill(text, phrase=_phrase(rng, name, column)), aggregator, [(r, col[name]) for r in range(len(frame))],
            f'df["{name}"].{method}()', kind)

    name, column = rng.choice(sorted(numeric.items()))
    threshold = _threshold(rng, frame[name].tolist())
    if threshold is not None:
        text, op = _pick(rng, "count with condition", which)
        cells = [(r, col[name]) for r, v in enumerate(frame[name]) if (v > threshold if op == ">" else v < threshold)]
        add(fill(text, phrase=_phrase(rng, name, column), v=threshold), "COUNT", cells,
            f'(df["{name}"] {op} {threshold}).sum()', "count with condition")

    text, _ = _pick(rng, "count rows", which)
    add(fill(text), "COUNT", [(r, col[key]) for r in range(len(frame))], "len(df)", "count rows")
    return out


def generate_split(split, n_tables, *, seed=None):
    """Examples of one split of :data:`SPLITS` from ``n_tables`` seeded tables, one question per kind.

    The seed defaults to the split's own, so each split is a fixed set; pass another seed for a
    fresh sample of the same distribution.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    if not isinstance(n_tables, int) or n_tables < 1:
        raise ValueError(f"n_tables must be a positive int, got {n_tables!r}")
    groups, which, default_seed = SPLITS[split]
    rng = random.Random(default_seed if seed is None else seed)
    examples = []
    for _ in range(n_tables):
        themes = rng.choice(groups) if isinstance(groups, tuple) else groups
        theme = _draw_theme(rng, themes)
        frame, schema, numeric = themes[theme](rng, rng.randint(3, 8))
        for example in broad_questions(frame, schema, numeric, rng, which):
            example.theme = theme
            examples.append(example)
    return examples


TEST_TABLES = 40
"""Tables in the test split as shipped in data/tapas/test_split.json (about 210 questions)."""

TEST2_TABLES = 60
"""Tables in the second test split, generate_split("test2", TEST2_TABLES) (about 310 questions): made
from code, and pinned by a hash of its records in tests/test_tapas.py."""

TEST3_TABLES = 60
"""Tables in the third test split, generate_split("test3", TEST3_TABLES), pinned the same way."""

TEST4_TABLES = 60
"""Tables in the fourth test split, generate_split("test4", TEST4_TABLES), pinned the same way."""


def split_records(examples):
    """The examples as JSON-ready dicts (table as rows of str, question, operator, cells, pandas, gold,
    kind, theme, and the table's index in the split), e.g. to ship a split beside the code."""
    records, tables = [], {}
    for e in examples:
        index = tables.setdefault(id(e.table), len(tables))
        gold = e.gold.item() if hasattr(e.gold, "item") else e.gold
        records.append(dict(table_index=index, header=list(e.table.columns), rows=e.table.to_numpy().tolist(),
                            question=e.question, aggregator=e.aggregator, coordinates=[list(c) for c in e.coordinates],
                            pandas=e.pandas, gold=gold, kind=e.kind, theme=e.theme))
    return records


WRITE_TEST_SPLIT = "python -c \"from utils import tapas; tapas.write_test_split('data/tapas/test_split.json')\""


def write_test_split(path):
    """Write the test split (TEST_TABLES tables) to ``path`` as JSON, with the command that wrote it."""
    import json

    records = split_records(generate_split("test", TEST_TABLES))
    payload = dict(command=WRITE_TEST_SPLIT, split="test", tables=TEST_TABLES, questions=records)
    Path(path).write_text(json.dumps(payload, indent=0) + "\n", encoding="utf-8")
    return len(records)


def load_split(path):
    """The examples of a split written by :func:`write_test_split`, and each one's table index (for
    intervals that resample whole tables)."""
    import json

    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    examples, tables, indices = [], {}, []
    for q in payload["questions"]:
        if q["table_index"] not in tables:
            tables[q["table_index"]] = pd.DataFrame(q["rows"], columns=q["header"])
        examples.append(Example(tables[q["table_index"]], q["question"], q["aggregator"], [tuple(c) for c in q["coordinates"]],
                                q["pandas"], q["gold"], q["kind"], q["theme"]))
        indices.append(q["table_index"])
    return examples, indices


def _draw_theme(rng, themes):
    if RANDOM_SCHEMA in themes and rng.random() < RANDOM_SCHEMA_SHARE:
        return RANDOM_SCHEMA
    return rng.choice(sorted(t for t in themes if t != RANDOM_SCHEMA))


def broad_lookups(n_tables, *, seed=0):
    """Lookups by name (one per row of ``n_tables`` training tables, random schemas included) in the
    training templates."""
    if not isinstance(n_tables, int) or n_tables < 1:
        raise ValueError(f"n_tables must be a positive int, got {n_tables!r}")
    rng = random.Random(seed)
    examples = []
    for _ in range(n_tables):
        theme = _draw_theme(rng, TRAIN_THEMES)
        frame, schema, numeric = TRAIN_THEMES[theme](rng, rng.randint(3, 8))
        table = prepare_table(frame)
        for row in range(len(frame)):
            question, aggregator, coordinates, code, kind = _broad_lookup(frame, schema, numeric, rng, "train", row)
            examples.append(Example(table, question, aggregator, coordinates, code, run_pandas(code, frame), kind, theme))
    return examples


# ---------------------------------------------------------------------------------------------
# Vocabulary, encoding, model config, evaluation
# ---------------------------------------------------------------------------------------------


def corpus_lines(n_tables=400, seed=1234):
    """Text to learn the vocabulary from: generated tables (header and rows) and their questions (the original
    generator's, ``sensible=False``, as when data/tapas/corpus.txt was written)."""
    lines = []
    for frame_seed in range(seed, seed + n_tables):
        rng = random.Random(frame_seed)
        frame, schema, numeric = _make_table(rng)
        table = prepare_table(frame)
        lines.append(" ".join(table.columns))
        lines.extend(" ".join(row) for row in table.itertuples(index=False))
        lines.extend(example.question for example in questions_for_table(frame, schema, numeric, rng, sensible=False))
    return lines


def broad_corpus_lines(n_tables=2000, seed=1234):
    """Text for a vocabulary of the broad generator: training-theme tables and training-template
    questions only, so that the held-out themes and phrasings stay unseen by the vocabulary too."""
    lines = []
    for example in generate_split("train", n_tables, seed=seed):
        lines.append(example.question)
        if example.kind == "count rows":  # once per table
            lines.append(" ".join(c.replace("_", " ") for c in example.table.columns))
            lines.extend(" ".join(row) for row in example.table.itertuples(index=False))
    return lines


def transplant_vocabulary(model, old_tokenizer, new_tokenizer):
    """Give ``model`` the input embeddings of ``new_tokenizer``'s vocabulary, in place.

    Tokens both vocabularies hold keep their trained vectors; the others start from the config's
    initialiser. This lets a trained model continue with a larger vocabulary.
    """
    import torch

    old = model.get_input_embeddings().weight.data
    if old.shape[0] != len(old_tokenizer.vocab):
        raise ValueError(f"the model has {old.shape[0]} input embeddings but old_tokenizer {len(old_tokenizer.vocab)} tokens")
    new = torch.empty(len(new_tokenizer.vocab), old.shape[1]).normal_(0.0, model.config.initializer_range)
    kept = 0
    for token, index in new_tokenizer.vocab.items():
        if token in old_tokenizer.vocab:
            new[index] = old[old_tokenizer.vocab[token]]
            kept += 1
    model.set_input_embeddings(torch.nn.Embedding.from_pretrained(new, freeze=False, padding_idx=model.config.pad_token_id))
    model.config.vocab_size = new.shape[0]
    return kept


def untrained_rows(model, margin=1.15):
    """Rows of ``model``'s word embeddings still at their initialisation, as a boolean tensor over the vocabulary.

    The initialiser draws every coordinate from N(0, initializer_range²), which gives a row of d coordinates a norm
    near initializer_range·√d; a row that training never updates keeps that norm, or shrinks below it under AdamW's
    weight decay, while the rows training used have grown well past it. A row counts as untrained when its norm is
    below `margin` times initializer_range·√d."""
    weight = model.get_input_embeddings().weight.detach().float()
    return weight.norm(dim=1) < margin * model.config.initializer_range * weight.shape[1] ** 0.5


def untrained_share(tokenizer, examples, untrained):
    """The share of the word pieces of `examples` (question and table, as the tokenizer encodes them) whose
    embedding row is untrained (:func:`untrained_rows`), overall and among the '##' pieces of split words:
    {"word pieces": share, "'##' pieces": share}."""
    total = hits = pieces = piece_hits = 0
    for e in examples:
        ids = tokenizer(table=e.table, queries=e.question, truncation=True)["input_ids"]
        for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
            if token in tokenizer.all_special_tokens:
                continue
            total += 1
            hits += bool(untrained[token_id])
            if token.startswith("##"):
                pieces += 1
                piece_hits += bool(untrained[token_id])
    if not total:
        raise ValueError("untrained_share: the examples hold no word piece")
    return {"word pieces": hits / total, "'##' pieces": piece_hits / pieces if pieces else float("nan")}


def with_redrawn_rows(model, untrained, *, seed=0, how="trained distribution"):
    """A copy of ``model`` whose untrained embedding rows (:func:`untrained_rows`) are replaced, with no training:
    ``how="trained distribution"`` draws them from the Gaussian with the trained rows' mean and covariance (this
    course's choice: distinct rows shaped like trained ones); ``how="mean"`` puts every one at the trained rows'
    mean, as transformers' ``resize_token_embeddings(mean_resizing=True)`` starts added tokens (it samples with
    1e-9 times the covariance) and as Hewitt (2021) recommends; ``how="rescaled"``, a control, keeps each row's direction and scales it to the trained rows' median norm;
    ``how="isotropic"``, another, draws them from a Gaussian with the trained rows' mean and the same total variance
    spread equally over all directions: rows of a trained length and centre whose directions carry nothing of the
    trained rows' covariance."""
    import copy

    import torch

    if how not in ("trained distribution", "mean", "rescaled", "isotropic"):
        raise ValueError(f"how must be 'trained distribution', 'mean', 'rescaled' or 'isotropic', got {how!r}")
    if not untrained.any() or untrained.all():
        raise ValueError("with_redrawn_rows needs some untrained rows and some trained ones")
    copied = copy.deepcopy(model)
    weight = copied.get_input_embeddings().weight
    with torch.no_grad():
        trained = weight[~untrained].float()
        if how == "mean":
            new = trained.mean(dim=0).expand(int(untrained.sum()), -1)
        elif how == "rescaled":
            rows = weight[untrained].float()
            new = rows / rows.norm(dim=1, keepdim=True) * trained.norm(dim=1).median()
        else:
            covariance = torch.cov(trained.T) + 1e-6 * torch.eye(trained.shape[1])
            noise = torch.randn(int(untrained.sum()), trained.shape[1], generator=torch.Generator().manual_seed(seed))
            if how == "isotropic":
                new = trained.mean(dim=0) + noise * (torch.trace(covariance) / trained.shape[1]).sqrt()
            else:
                new = trained.mean(dim=0) + noise @ torch.linalg.cholesky(covariance).T
        weight[untrained] = new.to(weight.dtype)
    return copied


def never_trained_lookups(lookups, tokenizer):
    """The `lookups` with both words swapped for never-trained ones (:func:`renamed_variants` with every set of
    :func:`never_trained_words`), pooled over the sets, without and with never-trained decoys. Returns
    ({name: [Example]}, {name: group ids}): the groups name each question's original table, so that an interval
    resamples a table with all its renamed copies."""
    variants = renamed_variants(lookups, never_trained=never_trained_words(tokenizer), never_trained_decoys=True)
    names = {"never-trained words": lambda v: not v.endswith("decoys"),
             "the same, with never-trained decoys": lambda v: v.endswith("decoys")}
    sets = {name: [v for v in variants if v.startswith("never-trained") and keep(v)] for name, keep in names.items()}
    return ({name: [e for v in chosen for e in variants[v]] for name, chosen in sets.items()},
            {name: table_ids(lookups) * len(chosen) for name, chosen in sets.items()})


def redrawn_rows_scores(model, tokenizer, untrained, question_sets, *, draws=3, groups=None):
    """Each set of `question_sets` ({name: [Example]}) asked through the pipeline of `model` as it is, of the
    two controls (untrained rows all at the trained rows' mean, as transformers starts added tokens; drawn
    isotropically at the trained rows' mean and total variance, seed 0), and of `draws` copies with those
    rows drawn like trained ones (:func:`with_redrawn_rows`, seeds 0 to draws - 1). Nothing is trained.

    Returns two DataFrames, one row per model and one column per set, named with its number of questions: the
    shares right, and each edited model minus the model as it is on the same questions
    (:func:`utils.evaluation.mcnemar`, whole groups resampled: `groups` maps a set's name to its questions' group
    ids, by default their tables, :func:`table_ids`), as "+13 (+3 to +23)": points and the 95% interval."""
    from transformers import pipeline

    from .evaluation import mcnemar

    groups = dict(groups or {})
    unknown = set(groups) - set(question_sets)
    if unknown:
        raise ValueError(f"groups names sets that are not among the question sets: {sorted(unknown)}")
    for name, questions in question_sets.items():
        groups.setdefault(name, table_ids(questions))
        if len(groups[name]) != len(questions):
            raise ValueError(f"{name}: {len(groups[name])} group ids for {len(questions)} questions")
    models = {"as shipped": model, "untrained rows at the trained mean": with_redrawn_rows(model, untrained, how="mean"),
              "untrained rows drawn isotropically": with_redrawn_rows(model, untrained, how="isotropic"),
              **{f"untrained rows drawn like trained ones, draw {k}": with_redrawn_rows(model, untrained, seed=k)
                 for k in range(draws)}}
    correct = {}
    for name, edited in models.items():
        pipe = pipeline("table-question-answering", model=edited, tokenizer=tokenizer)
        correct[name] = {f"{label} ({len(questions)})": evaluate(pipe, questions)["correct"].to_numpy()
                         for label, questions in question_sets.items()}
    column_groups = {f"{label} ({len(questions)})": groups[label] for label, questions in question_sets.items()}
    shares = pd.DataFrame({name: {k: v.mean() for k, v in sets.items()} for name, sets in correct.items()}).T

    def versus(name, column):
        c = mcnemar(correct[name][column], correct["as shipped"][column], groups=column_groups[column])
        return f"{100 * c.difference:+.0f} ({100 * c.low:+.0f} to {100 * c.high:+.0f})"

    paired = pd.DataFrame({name: {column: versus(name, column) for column in shares.columns}
                           for name in list(models)[1:]}).T
    return shares, paired


def build_vocab(text_file, out_dir, *, vocab_size=2000):
    """Train a lower-cased WordPiece vocabulary on ``text_file`` (a path or a list of paths); write and
    return ``out_dir/vocab.txt``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    files = [Path(f) for f in (text_file if isinstance(text_file, (list, tuple)) else [text_file])]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"no text to build the vocabulary from at {file}")
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an int above {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # Same normalisation and splitting as TapasTokenizer's BasicTokenizer: lower case, strip accents,
    # split on white space and punctuation.
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train([str(file) for file in files], trainer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.model.save(str(out_dir))  # writes vocab.txt, one token a line, in id order
    return out_dir / "vocab.txt"


def weak_answer(example):
    """What weak supervision knows of an example: its answer alone, as WikiTableQuestions gives it.

    Returns ``(coordinates, texts, float_answer)``: the (row, column) cells whose text is the gold
    answer (where the answer appears in the table: none for a total that is no cell, several when a
    value repeats), their texts, and the answer as a float (NaN when it is text), the three things
    TAPAS's weakly supervised loss reads."""
    gold = example.gold
    try:
        number = parse_number(gold) if isinstance(gold, str) else float(gold)
    except (TypeError, ValueError):
        number = float("nan")
    table = example.table
    cells = [(r, c) for r in range(table.shape[0]) for c in range(table.shape[1])
             if denotation_match(table.iat[r, c], gold)]
    return cells, [table.iat[r, c] for r, c in cells], number


def encode_examples(tokenizer, examples, *, supervision="strong"):
    """Tokenize examples for training: one dict of 0-D/1-D/2-D tensors per example.

    ``supervision="strong"``: the labelled operator and the cells the program reads. ``"weak"``: the
    answer alone (:func:`weak_answer`): the cells where it appears, ``float_answer``, and the
    tokenizer's ``numeric_values`` and ``numeric_values_scale``, for a model whose config has
    ``use_answer_as_supervision=True`` (:data:`WTQ_WEAK_SUPERVISION`)."""
    import torch

    if supervision not in ("strong", "weak"):
        raise ValueError(f"supervision must be 'strong' or 'weak', got {supervision!r}")
    encoded = []
    for example in examples:
        if supervision == "strong":
            coordinates, texts = example.coordinates, example.answer_text
        else:
            coordinates, texts, number = weak_answer(example)
        enc = tokenizer(table=example.table, queries=example.question, answer_coordinates=coordinates,
                        answer_text=texts, truncation=True)
        keys = ("input_ids", "attention_mask", "token_type_ids", "labels")
        if supervision == "weak":
            keys += ("numeric_values", "numeric_values_scale")
        item = {k: torch.tensor(enc[k]) for k in keys}
        if supervision == "strong":
            item["aggregation_labels"] = torch.tensor(example.aggregation_label)
        else:
            item["float_answer"] = torch.tensor(number, dtype=torch.float32)
        encoded.append(item)
    return encoded


_PAD_VALUES = {"numeric_values": float("nan"), "numeric_values_scale": 1.0}  # as TapasTokenizer pads them


def collate(batch):
    """Pad a list of :func:`encode_examples` items to the longest one and stack them (numeric values
    padded with NaN and their scales with 1, as the tokenizer pads them; everything else with 0)."""
    import torch

    length = max(item["input_ids"].shape[0] for item in batch)
    out = {}
    for key in batch[0]:
        if batch[0][key].dim() == 0:
            out[key] = torch.stack([item[key] for item in batch])
            continue
        padded = []
        for item in batch:
            value = item[key]
            pad = length - value.shape[0]
            shape = (pad,) + tuple(value.shape[1:])
            padded.append(torch.cat([value, value.new_full(shape, _PAD_VALUES.get(key, 0))]))
        out[key] = torch.stack(padded)
    return out


def masked_lm_collate(tokenizer, *, rate=0.15, seed=0):
    """A collate function for TAPAS's pre-training objective, masked language modelling over a question or
    text and a flattened table (Herzig et al. 2020, section 3): it pads :func:`encode_examples` items as
    :func:`collate` does, then masks `rate` of the word pieces that are not special tokens as BERT does
    (transformers' DataCollatorForLanguageModeling: of those, 80% become [MASK], 10% a random token,
    10% stay), seeded with `seed`. The batch holds input_ids, attention_mask, token_type_ids, and
    labels: the original id where a piece was chosen, -100 elsewhere."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    if not 0 < rate < 1:
        raise ValueError(f"masked_lm_collate: rate must lie between 0 and 1, got {rate!r}")
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=rate, seed=seed)
    masker.create_rng()  # the collator seeds its generator only inside __call__; torch_mask_tokens alone would use torch's global one
    special = torch.tensor(sorted(tokenizer.all_special_ids))

    def collate_fn(batch):
        out = collate(batch)
        ids, labels = masker.torch_mask_tokens(out["input_ids"].clone(), special_tokens_mask=torch.isin(out["input_ids"], special))
        return {"input_ids": ids, "attention_mask": out["attention_mask"], "token_type_ids": out["token_type_ids"],
                "labels": labels}

    return collate_fn


def small_config(vocab_size, **overrides):
    """A small TapasConfig for the WTQ operators with strong supervision of the aggregator."""
    from transformers import TapasConfig

    settings = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_aggregation_labels=len(AGGREGATION_LABELS),
        aggregation_labels=dict(AGGREGATION_LABELS),
        no_aggregation_label_index=0,
        use_answer_as_supervision=False,
        select_one_column=True,
        init_cell_selection_weights_to_zero=True,
    )
    settings.update(overrides)
    return TapasConfig(**settings)


def cell_probabilities(inputs, logits, shape):
    """Mean token probability of every table cell, as a (rows, columns) array, for one example.

    The same average that ``TapasTokenizer.convert_logits_to_predictions`` thresholds at 0.5.
    """
    import numpy as np
    import torch

    if logits.dim() != 2 or logits.shape[0] != 1:
        raise ValueError(f"expected the logits of one example, shape (1, tokens), got {tuple(logits.shape)}")
    rows, columns = shape
    types = inputs["token_type_ids"][0]
    probs = torch.sigmoid(logits[0]) * inputs["attention_mask"][0]
    total, count = np.zeros(shape), np.zeros(shape)
    for p, segment, col, row in zip(probs.tolist(), types[:, 0].tolist(), types[:, 1].tolist(), types[:, 2].tolist()):
        if segment == 1 and 1 <= row <= rows and 1 <= col <= columns:
            total[row - 1, col - 1] += p
            count[row - 1, col - 1] += 1
    with np.errstate(invalid="ignore"):
        return total / count


def ask(pipe, table, question, gold=None, *, details=False):
    """One question through a table-question-answering pipeline: its answer, the executed value, the check.

    An answer that cannot be executed (NONE or AVERAGE over no cell, SUM over text) gets the value
    None and counts as wrong. With ``details``, also the operator the model chose (``operator``: NONE when
    its config has no aggregation head) and how many cells it selected (``cells``).
    """
    answer = pipe(table=table, query=question)
    try:
        value = execute_pipeline_answer(answer)
    except ValueError:
        value = None
    row = dict(question=question, tapas=answer["answer"], executed=value)
    if details:
        row.update(operator=answer.get("aggregator", "NONE"), cells=len(answer["cells"]))
    if gold is not None:
        row.update(gold=gold, correct=value is not None and denotation_match(value, gold))
    return row


def evaluate(pipe, examples, *, details=False):
    """Ask ``pipe`` every example's question; a DataFrame with the executed answers and whether each is right
    (with ``details``, also each answer's operator and number of cells: :func:`ask`)."""
    rows = [dict(kind=e.kind, theme=e.theme, **ask(pipe, e.table, e.question, e.gold, details=details))
            for e in examples]
    return pd.DataFrame(rows)


def accuracy_by_kind(results, *, confidence=0.95, groups=None, n_boot=2000, seed=0):
    """Right / asked per question kind and in all, with intervals, from :func:`evaluate`'s frame.

    The intervals come from :func:`utils.evaluation.accuracy` and cover the sampling of the test
    questions, for this one fixed model (not what retraining would give): Wilson's interval, with
    every question counted as independent. `groups` names a column of `results` that says which
    questions belong together, e.g. "table" for the table each was asked about (:func:`evaluate`
    records only kind, theme, question, tapas, executed, gold and correct; add such a column
    yourself); the interval is then a bootstrap (`n_boot` resamples, seeded with `seed`) that
    resamples whole groups, since questions about one table succeed or fail together. A kind whose
    questions all come from one group has nothing to resample: its bounds are NaN.
    """
    from .evaluation import accuracy

    if not isinstance(results, pd.DataFrame) or not {"kind", "correct"} <= set(results.columns):
        raise TypeError("results must be the DataFrame of tapas.evaluate, with 'kind' and 'correct' columns")
    if groups is not None and groups not in results.columns:
        raise ValueError(f"accuracy_by_kind: results have no column {groups!r} to resample groups by "
                         f"(columns: {list(results.columns)})")
    if len(results) == 0:
        raise ValueError("results is empty: no question was asked")
    parts = [(kind, part) for kind, part in results.groupby("kind")] + [("all", results)]
    rows = []
    for kind, part in parts:
        correct = part["correct"].to_numpy(dtype=float)
        right, asked = int(correct.sum()), len(correct)
        labels = None if groups is None else part[groups].to_numpy()
        if labels is not None and len(pd.unique(labels)) < 2:
            low = high = float("nan")
        else:
            estimate = accuracy(correct, groups=labels, confidence=confidence, n_boot=n_boot, seed=seed)
            low, high = estimate.low, estimate.high
        rows.append(dict(kind=kind, right=right, asked=asked, accuracy=right / asked, low=low, high=high))
    return pd.DataFrame(rows).set_index("kind")


WTQ_WEAK_SUPERVISION = dict(
    use_answer_as_supervision=True,
    answer_loss_cutoff=0.664694,
    cell_selection_preference=0.207951,
    huber_loss_delta=0.121194,
    temperature=0.0352513,
)
"""The weak-supervision settings in google/tapas-base-finetuned-wtq's config.json (the same values
as the transformers TAPAS guide's WTQ example)."""

WIKISQL_WEAK_SUPERVISION = dict(
    use_answer_as_supervision=True,
    answer_loss_cutoff=0.185567,
    cell_selection_preference=0.611754,
    huber_loss_delta=1265.74,
    temperature=0.107515,
)
"""The answer-loss values google-research/tapas tuned for weak supervision on WikiSQL (tapas/utils/hparam_utils.py,
task WIKISQL): cutoff, cell-selection preference, Huber delta and temperature. Two of that task's other settings are
not taken: it sets init_cell_selection_weights_to_zero False, while :func:`small_config` sets it True for every arm
(as Google's WTQ settings do), and it keeps
the small model's one-column selection: WikiSQL's select_one_column=False fails in transformers' loss on the
integer cell labels the tokenizer returns."""


def loss_terms(model, inputs, *, aggregation_labels=None, float_answer=None):
    """The terms of ``TapasForQuestionAnswering``'s loss for a batch, one value per example.

    With ``model.config.use_answer_as_supervision`` false (strong supervision) pass
    ``aggregation_labels``; with it true (weak supervision, the answer alone) pass ``float_answer``
    (NaN where the answer is text) and ``inputs`` from the tokenizer called with the answer, which
    holds ``numeric_values`` and ``numeric_values_scale``. Returns a dict of tensors:
    ``aggregate`` (1 where the model must aggregate, 0 where it must select the answer's cells; NaN under strong
    supervision, which has no such mask), ``cell_selection`` (its likelihood loss, counted for every question under
    strong supervision and only where aggregate is 0 under weak), ``aggregation``
    (cross-entropy to the label, or under weak supervision -log P(NONE) or -log P(any operator)),
    ``answer`` (Huber loss between the expected result of the soft selection and the answer),
    ``kept`` (0 where the answer loss is above the cutoff and the example is dropped) and
    ``total``, the mean over the batch that the model's own ``loss`` equals.
    """
    import torch
    from transformers.models.tapas import modeling_tapas as mt

    config = model.config
    if not config.select_one_column or config.num_aggregation_labels == 0 or config.disable_per_token_loss:
        raise ValueError("loss_terms follows the WTQ set-up: select_one_column, an aggregation head, per-token loss")
    weak = bool(config.use_answer_as_supervision)
    if weak and float_answer is None:
        raise ValueError("weak supervision (use_answer_as_supervision=True) needs float_answer")
    if not weak and aggregation_labels is None:
        raise ValueError("strong supervision needs aggregation_labels")
    if model.training:
        raise ValueError("call model.eval() first: dropout would make the terms differ from a second forward pass")
    labels, types = inputs["labels"], inputs["token_type_ids"]
    sequence, pooled = model.tapas(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                   token_type_ids=types)[:2]
    rows = mt.IndexMap(torch.clamp(types[:, :, 2], max=config.max_num_rows - 1), config.max_num_rows, batch_dims=1)
    columns = mt.IndexMap(torch.clamp(types[:, :, 1], max=config.max_num_columns - 1), config.max_num_columns, batch_dims=1)
    cells = mt.ProductIndexMap(rows, columns)
    cell_mask, _ = mt.reduce_mean(inputs["attention_mask"].float(), cells)
    logits = mt.compute_token_logits(sequence, config.temperature, model.output_weights, model.output_bias)
    column_logits = mt.compute_column_logits(sequence, model.column_output_weights, model.column_output_bias, cells,
                                             cell_mask, config.allow_empty_column_selection)
    aggregation_logits = model.aggregation_classifier(pooled)
    selection, logits = mt._single_column_cell_selection_loss(logits, column_logits, labels, cells, columns, cell_mask)
    if not weak:
        aggregate = torch.full((labels.shape[0],), float("nan"))  # strong supervision has no such mask
        aggregation = mt._calculate_aggregation_loss(aggregation_logits, None, aggregation_labels, False,
                                                     config.num_aggregation_labels, config.aggregation_loss_weight)
        answer, kept, cell_selection = torch.zeros_like(aggregation), torch.ones_like(aggregation), selection
    else:
        aggregate = mt._calculate_aggregate_mask(float_answer, pooled, config.cell_selection_preference, labels,
                                                 model.aggregation_classifier)
        aggregation = mt._calculate_aggregation_loss(aggregation_logits, aggregate, torch.zeros_like(labels[:, 0]), True,
                                                     config.num_aggregation_labels, config.aggregation_loss_weight)
        table_mask = (types[:, :, 2] > 0).float()
        answer, kept = mt._calculate_regression_loss(float_answer, aggregate,
                                                     torch.distributions.Bernoulli(logits=logits, validate_args=False),
                                                     inputs["numeric_values"], inputs["numeric_values_scale"], table_mask,
                                                     aggregation_logits, config)
        cell_selection = selection * (1.0 - aggregate)
    total = cell_selection.mean() + ((aggregation + answer) * kept).mean()
    return dict(aggregate=aggregate, cell_selection=cell_selection, aggregation=aggregation, answer=answer, kept=kept,
                total=total)



def truncation_report(tokenizer, table, question, *, max_length=512):
    """What ``truncation="drop_rows_to_fit"`` does to `table` for `question`: TapasTokenizer keeps as many rows as fit
    with every cell cut to a common number of word pieces (dropping rows from the end while even one piece per cell
    does not fit), then takes the largest such number with which those rows fit (``cell_trim_length=-1``, its
    default), keeping whole any word that starts within it. Returns dict(tokens_all, tokens_kept, rows_kept,
    cells_kept, cells_trimmed, pieces_per_cell): the sequence's length untruncated and truncated, the rows kept, how
    many of their cells (header excluded) reach the model with fewer word pieces than the table holds, and the most
    word pieces any kept cell keeps."""
    import collections

    import numpy as np

    def pieces(encoding):  # (column, row) -> word pieces, for every body cell of the sequence
        types = np.array(encoding["token_type_ids"])
        return collections.Counter((int(c), int(r)) for segment, c, r in types[:, :3] if segment == 1 and r > 0)

    whole = tokenizer(table=table, queries=question)
    kept = tokenizer(table=table, queries=question, truncation="drop_rows_to_fit", max_length=max_length)
    full, cut = pieces(whole), pieces(kept)
    if not cut:
        raise ValueError(f"no cell of the table fits in {max_length} tokens beside the question")
    return dict(tokens_all=len(whole["input_ids"]), tokens_kept=len(kept["input_ids"]), rows_kept=max(r for _, r in cut),
                cells_kept=len(cut), cells_trimmed=sum(cut[cell] < full[cell] for cell in cut),
                pieces_per_cell=max(cut.values()))


def kept_answers(model, tokenizer, table, question, answers):
    """Under weak supervision (a `model` whose config has ``use_answer_as_supervision``), which of the
    numeric `answers` to `question` over `table` the model would still learn from: those whose answer
    loss stays under ``answer_loss_cutoff`` (:func:`loss_terms`' ``kept``). Returns them as a list."""
    import torch

    if not model.config.use_answer_as_supervision:
        raise ValueError("kept_answers needs a model configured for weak supervision (use_answer_as_supervision=True)")
    answers = [float(a) for a in answers]
    if not answers:
        raise ValueError("kept_answers: no answer given")
    inputs = tokenizer(table=table, queries=[question] * len(answers), answer_coordinates=[[]] * len(answers),
                       answer_text=[[]] * len(answers), return_tensors="pt")
    with torch.no_grad():
        kept = loss_terms(model.eval(), inputs, float_answer=torch.tensor(answers))["kept"] == 1
    return [_as_int_if_whole(a) for a, k in zip(answers, kept.tolist()) if k]


def supervision_terms(tokenizer, table, questions, *, operators, strong_cells, answers, answer_cells, seed=0):
    """The loss terms (:func:`loss_terms`) of a fresh small model, seeded with `seed`, for
    `questions` over `table`, under both kinds of supervision: strong (the `operators`, names such
    as "SUM", and the `strong_cells` the programs read) and weak (:data:`WTQ_WEAK_SUPERVISION`: the
    `answers`, NaN for a text answer, with `answer_cells`, the cells where an answer's text
    appears). Cells are (row, column) pairs of the table. Checks that the terms give the model's
    own loss; returns a DataFrame indexed by (supervision, question)."""
    import torch
    from transformers import TapasForQuestionAnswering

    from .core import seed_everything

    lengths = {len(questions), len(operators), len(strong_cells), len(answers), len(answer_cells)}
    if len(lengths) != 1:
        raise ValueError("questions, operators, strong_cells, answers and answer_cells must be equally long, "
                         f"got {len(questions)}, {len(operators)}, {len(strong_cells)}, {len(answers)}, {len(answer_cells)}")
    labels = torch.tensor([AGGREGATION_IDS[op.upper()] for op in operators])
    rows = {}
    for name, overrides, cells, supervision in [
            ("strong: operator and cells", {}, strong_cells, dict(aggregation_labels=labels)),
            ("weak: the answer alone", WTQ_WEAK_SUPERVISION, answer_cells,
             dict(float_answer=torch.tensor([float(a) for a in answers])))]:
        seed_everything(seed)
        fresh = TapasForQuestionAnswering(small_config(tokenizer.vocab_size, **overrides)).eval()
        inputs = tokenizer(table=table, queries=list(questions), answer_coordinates=[list(c) for c in cells],
                           answer_text=[[table.iat[r, c] for r, c in cc] for cc in cells], padding="longest",
                           return_tensors="pt")
        with torch.no_grad():
            terms = loss_terms(fresh, inputs, **supervision)
            own = float(fresh(**inputs, **supervision).loss)
        if abs(float(terms["total"]) - own) > 1e-4:
            raise AssertionError(f"loss terms add up to {float(terms['total'])}, the model's loss is {own}")
        weak_only = ("answer", "kept") if supervision.get("aggregation_labels") is not None else ()
        for i, question in enumerate(questions):  # terms that strong supervision does not have are shown as NaN
            rows[(name, question)] = {k: float("nan") if k in weak_only else float(v[i])
                                      for k, v in terms.items() if k != "total"}
    return pd.DataFrame(rows).T

SUPERVISION_COMMAND = "python scripts/tapas_supervision.py --out data/tapas/supervision_runs.json"


SUPERVISION_ARMS = {
    "strong": ("strong", {}),
    "strong, WTQ temperature": ("strong", {"temperature": WTQ_WEAK_SUPERVISION["temperature"]}),
    "weak": ("weak", WTQ_WEAK_SUPERVISION),
    "weak, no cutoff": ("weak", {**WTQ_WEAK_SUPERVISION, "answer_loss_cutoff": None}),
    "weak, selection preferred": ("weak", {**WTQ_WEAK_SUPERVISION, "cell_selection_preference": 0.9}),
    "strong, then weak": ("weak", WTQ_WEAK_SUPERVISION),
    "strong, then strong": ("strong", {"temperature": WTQ_WEAK_SUPERVISION["temperature"]}),
    "weak, normalised answer loss": ("weak", {**WTQ_WEAK_SUPERVISION, "use_normalized_answer_loss": True}),
    "weak, WikiSQL settings": ("weak", WIKISQL_WEAK_SUPERVISION),
}
"""The runs of :func:`supervision_runs`: name -> (what the training questions carry, config overrides). The weak
arm takes every WTQ setting, the temperature that divides the cell logits among them; "strong, WTQ temperature"
takes that temperature alone, so that weak against it changes the supervision only; "weak, no cutoff" drops
`answer_loss_cutoff`, so that no question is left out of the answer loss; "weak, selection preferred" raises
`cell_selection_preference` from WTQ's 0.208 to 0.9, above a fresh model's probability of any operator (about
0.77: a near-uniform aggregation head gives its three operators about three quarters), so that an answer found in a cell is selected, not aggregated. The two arms named "strong,
then ..." start from the seed's "strong, WTQ temperature" model and train as many steps again, from the answers
alone or from the labels: does weak supervision learn once the expected results lie near the answers? The last two,
:data:`SETTINGS_ARMS`, try other answer-loss settings: WTQ's with the answer loss normalised by the answer's size
(`use_normalized_answer_loss`), and Google's settings for WikiSQL."""

SETTINGS_ARMS = ("weak, normalised answer loss", "weak, WikiSQL settings")
"""Arms added after the others had been read; scripts/tapas_supervision.py runs them only when asked (--arms)."""


HEAD_SETTINGS = ("num_aggregation_labels", "aggregation_labels", "no_aggregation_label_index",
                 "use_answer_as_supervision", "select_one_column", "init_cell_selection_weights_to_zero")
"""The settings of :func:`small_config` that shape the question-answering heads. :func:`fresh_model` gives them to
an encoder's configuration, so that a pre-trained encoder whose checkpoint has no such heads (google/tapas-tiny,
a TapasModel) gets the same operator head as the small models; the course's own checkpoints already hold them."""


def fresh_model(vocab_size, overrides, *, encoder=None):
    """A TapasForQuestionAnswering to train: :func:`small_config` with ``overrides``, every weight fresh; or, given
    ``encoder`` (a TapasForQuestionAnswering or TapasModel, trained or pre-trained), its configuration with
    :data:`HEAD_SETTINGS` and ``overrides`` and a copy of its encoder weights (the pooler included), under fresh
    heads (cell selection, column and operator; drawn from the current random state)."""
    import copy

    from transformers import TapasForQuestionAnswering

    if encoder is None:
        return TapasForQuestionAnswering(small_config(vocab_size, **overrides))
    body = getattr(encoder, "tapas", encoder)  # a TapasForQuestionAnswering holds its TapasModel as .tapas
    if body.config.vocab_size != vocab_size:
        raise ValueError(f"the encoder has a vocabulary of {body.config.vocab_size:,}, the tokenizer {vocab_size:,}: "
                         "they must be the same")
    config = copy.deepcopy(body.config)
    heads = small_config(vocab_size)
    config.update({key: getattr(heads, key) for key in HEAD_SETTINGS})
    config.update(overrides)
    model = TapasForQuestionAnswering(config)
    model.tapas.load_state_dict(body.state_dict())
    return model


def supervision_runs(tokenizer, train_examples, eval_examples, *, seeds=(0, 1, 2), steps=100, lr=2e-3,
                     batch_size=32, arms=tuple(SUPERVISION_ARMS), encoder=None):
    """Strong against weak supervision at the same budget: for every seed and every arm of
    :data:`SUPERVISION_ARMS` named in `arms`, a small model (:func:`small_config` with the arm's overrides)
    trained for `steps` steps on `train_examples`, from the labelled operator and cells (strong) or from the
    answers alone (weak: :data:`WTQ_WEAK_SUPERVISION`, :func:`weak_answer`), scored through the
    table-question-answering pipeline on `eval_examples`. Arms named "strong, then ..." start from the seed's
    "strong, WTQ temperature" model instead of a fresh one. The seed sets the initial weights and the order of
    the batches, the same for every arm. With ``encoder`` (the folder of a TapasForQuestionAnswering checkpoint
    read by ``tokenizer``'s vocabulary, or a loaded TapasForQuestionAnswering or TapasModel) every fresh model takes that checkpoint's configuration and encoder weights
    instead, with fresh heads (cell selection, column and operator) drawn under the seed: an encoder that already
    reads cells. Returns one row per (arm, seed, question), the arm in the column ``supervision``: kind, table (as
    :func:`table_ids`), whether it was answered right, the operator chosen, the number of cells selected, and the
    seconds the training took (the arm's own steps)."""
    import copy

    from transformers import TapasForQuestionAnswering, pipeline

    from .core import seed_everything
    from .training import train

    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds!r}")
    unknown = set(arms) - set(SUPERVISION_ARMS)
    if unknown or not arms:
        raise ValueError(f"arms must be among {list(SUPERVISION_ARMS)}, got {list(arms)}")
    source = encoder
    if encoder is not None and not hasattr(encoder, "config"):  # a folder, not a model
        source = TapasForQuestionAnswering.from_pretrained(encoder)
    if source is not None and source.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the encoder at {encoder} has a vocabulary of {source.config.vocab_size:,}, "
                         f"the tokenizer {tokenizer.vocab_size:,}: they must be the same")
    tables = table_ids(eval_examples)
    data = {kind: encode_examples(tokenizer, train_examples, supervision=kind) for kind in ("strong", "weak")}
    starts = {}  # seed -> the trained "strong, WTQ temperature" model

    def trained(arm, seed, start=None):
        supervision, overrides = SUPERVISION_ARMS[arm]
        seed_everything(seed)
        if start is None:
            model = fresh_model(tokenizer.vocab_size, overrides, encoder=source)
        else:
            model = copy.deepcopy(start)
            model.config.update(overrides)  # the forward pass reads these settings from the config
        history = train(model, data[supervision], collate_fn=collate, batch_size=batch_size, max_steps=steps, lr=lr,
                        seed=seed, progress=False)
        if not history["loss"].notna().all():
            raise RuntimeError(f"{arm} supervision, seed {seed}: the loss became NaN")
        return model, float(history["seconds"].iloc[-1])

    rows = []
    for arm in arms:
        for seed in seeds:
            start = None
            if arm.startswith("strong, then"):
                if seed not in starts:
                    starts[seed] = trained("strong, WTQ temperature", seed)[0]
                start = starts[seed]
            model, seconds = trained(arm, seed, start)
            if arm == "strong, WTQ temperature":
                starts[seed] = copy.deepcopy(model)
            pipe = pipeline("table-question-answering", model=model.eval(), tokenizer=tokenizer)
            results = evaluate(pipe, eval_examples, details=True)
            rows += [dict(supervision=arm, seed=seed, question=i, kind=r.kind, table=tables[i],
                          correct=bool(r.correct), operator=r.operator, cells=int(r.cells), seconds=seconds)
                     for i, r in enumerate(results.itertuples())]
    return pd.DataFrame(rows)


SUPERVISION_RECORDS = {"from scratch": "supervision_runs.json", "from scratch, 1,000 steps": "supervision_runs_1000.json",
                       "masked-LM encoder": "supervision_runs_mlm.json", "trained encoder": "supervision_runs_encoder.json",
                       "trained encoder, no cutoff": "supervision_runs_encoder_no_cutoff.json"}
"""The records of the planned supervision comparisons (scripts/tapas_supervision.py), by name: their files in data/tapas."""


def load_supervision_records(eval_seed=2):
    """Every record of :data:`SUPERVISION_RECORDS`, read, in that order: as scored on the live run's held-out questions
    (``eval_seed`` 2), or the same planned arms scored on fresh held-out questions (7: the files ending ``_eval7``)."""
    import json

    from .core import data_path

    if eval_seed not in (2, 7):
        raise ValueError(f"the supervision records were scored on held-out seeds 2 and 7, not {eval_seed!r}")
    suffix = "" if eval_seed == 2 else f"_eval{eval_seed}"
    return {name: json.loads(data_path("tapas", file.replace(".json", suffix + ".json")).read_text())
            for name, file in SUPERVISION_RECORDS.items()}


PLANNED_COMPARISONS = {
    "from scratch, 100 steps": ("from scratch", [("weak", "strong, WTQ temperature")]),
    "from scratch, 1,000 steps": ("from scratch, 1,000 steps", [("weak", "strong, WTQ temperature")]),
    "masked-LM encoder, 100 steps": ("masked-LM encoder", [("weak, pre-trained", "weak")]),
    "trained encoder, 100 steps": ("trained encoder", [("weak", "strong, WTQ temperature")]),
    "trained encoder, no cutoff": ("trained encoder, no cutoff", [("weak, no cutoff", "weak")]),
}
"""The five planned comparisons of scripts/tapas_supervision.py: name -> (the record that planned it, [(arm a, arm b)],
a minus b), read in :func:`supervision_starts`' frames."""


def supervision_starts(records):
    """The runs of :func:`load_supervision_records`' records by start, as the planned comparisons read them: from
    scratch at 100 and 1,000 steps; the masked-LM start's arms renamed ", pre-trained", beside the weak arm from
    scratch (its planned comparison's other side); the trained encoder's two records together (one start, seeds and
    rate)."""
    runs = {name: read_supervision_record(record) for name, record in records.items()}
    scratch, mlm = runs["from scratch"], runs["masked-LM encoder"]
    after_mlm = pd.concat([scratch[scratch["supervision"] == "weak"],
                           mlm.assign(supervision=mlm["supervision"] + ", pre-trained")])
    encoder = pd.concat([runs["trained encoder"], runs["trained encoder, no cutoff"]])
    return {"from scratch, 100 steps": scratch, "from scratch, 1,000 steps": runs["from scratch, 1,000 steps"],
            "masked-LM encoder, 100 steps": after_mlm, "trained encoder, 100 steps": encoder,
            "trained encoder, no cutoff": encoder}


def planned_lines(records, examples):
    """The planned comparisons (:data:`PLANNED_COMPARISONS`) as :func:`supervision_lines` prints them, start by start:
    each arm's accuracy over the seeds, then a minus b pooled (tables resampled) and seed by seed (Student's t)."""
    starts, lines = supervision_starts(records), []
    for name, (_, pairs) in PLANNED_COMPARISONS.items():
        arms = list(dict.fromkeys(arm for pair in pairs for arm in pair))
        lines += [f"{name}:", *supervision_lines(starts[name], examples, pairs, references=False, arms=arms)]
    return lines


def planned_summary(records):
    """One line per planned comparison (:data:`PLANNED_COMPARISONS`), seed by seed: :func:`supervision_summary`."""
    starts = supervision_starts(records)
    return supervision_summary([(starts[name], records[record], pair)
                                for name, (record, pairs) in PLANNED_COMPARISONS.items() for pair in pairs])


def supervision_summary(pairs):
    """One line per (runs, record, (arm a, arm b)) of `pairs`: a minus b seed by seed, in points, and Student's t
    interval of their mean (:func:`compare_supervision`), with the record's number of steps and, for a record that
    started from an encoder (trained with labels, or pre-trained by masked language modelling), that start."""
    lines = []
    for runs, record, (a, b) in pairs:
        points, over_seeds = compare_supervision(runs, a, b)[2]
        pretrained = "tapas_pretrain.py pretrain" in record.get("encoder_metrics", {}).get("command", "")
        start = (", from a masked-language pre-trained encoder" if pretrained
                 else ", from a trained encoder" if record.get("encoder") else "")
        lines.append(f"  {a} minus {b}, {record['steps']} steps{start}: {', '.join(f'{p:+.1f}' for p in points)} points; "
                     f"mean {over_seeds}")
    return lines


def learning_rate_table(by_rate, arms=("weak", "strong, WTQ temperature")):
    """Each arm's accuracy at each learning rate: `by_rate` maps a rate to runs as :func:`read_supervision_record`
    returns them. One row per arm, one column per rate (ascending), as "mean (lowest to highest)" over the seeds."""
    columns = {}
    for rate in sorted(by_rate):
        runs = by_rate[rate]
        missing = set(arms) - set(runs["supervision"])
        if missing:
            raise ValueError(f"learning rate {rate:g}: no runs of {sorted(missing)}")
        per_seed = runs[runs["supervision"].isin(arms)].groupby(["supervision", "seed"])["correct"].mean()
        columns[f"lr {rate:g}"] = {arm: f"{per_seed[arm].mean():.1%} ({per_seed[arm].min():.1%} to {per_seed[arm].max():.1%})"
                                   for arm in arms}
    return pd.DataFrame(columns).rename_axis("supervision")


def cutoff_drops(tokenizer, examples, *, seeds=(0, 1, 2), batch_size=64, encoder=None, encoded=None):
    """What the answer-loss cutoff does at the first step of weak supervision: for every seed, the
    fresh model that :func:`supervision_runs` starts its weak run from (the same seed, the same
    :data:`WTQ_WEAK_SUPERVISION`, and the same ``encoder``: a trained TapasForQuestionAnswering under fresh heads,
    or None for a model fresh throughout), and :func:`loss_terms` of `examples` given their answers alone.
    Returns one row per question kind and "all": the questions, and, as means over the seeds, how
    many the model must aggregate (an answer that is no cell, or an ambiguous one it would aggregate)
    and how many of those the cutoff drops (``kept`` 0: no aggregation or answer term). ``encoded``: the examples as
    ``encode_examples(tokenizer, examples, supervision="weak")`` gives them, when at hand (encoding is the slow part)."""
    import torch

    from .core import seed_everything

    if not examples:
        raise ValueError("cutoff_drops: no example given")
    data = encode_examples(tokenizer, examples, supervision="weak") if encoded is None else encoded
    if len(data) != len(examples):
        raise ValueError(f"cutoff_drops: {len(data)} encoded questions for {len(examples)} examples")
    kinds = pd.Series([e.kind for e in examples])
    counts = []
    for seed in seeds:
        seed_everything(seed)
        model = fresh_model(tokenizer.vocab_size, WTQ_WEAK_SUPERVISION, encoder=encoder).eval()
        aggregate, kept = [], []
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                batch = collate(data[start:start + batch_size])
                terms = loss_terms(model, batch, float_answer=batch.pop("float_answer"))
                aggregate += terms["aggregate"].tolist()
                kept += terms["kept"].tolist()
        frame = pd.DataFrame({"kind": kinds, "aggregated": aggregate,
                              "dropped": [a * (1 - k) for a, k in zip(aggregate, kept)]})
        counts.append(frame.groupby("kind")[["aggregated", "dropped"]].sum())
    table = pd.concat(counts).groupby(level=0).mean()
    table.insert(0, "questions", kinds.value_counts())
    table.loc["all"] = table.sum()
    return table


def compare_supervision(runs, a="weak", b="strong, WTQ temperature"):
    """The record of :func:`supervision_runs` read three ways: accuracy per seed and kind (a DataFrame, arm and
    seed as columns, kinds and "all" as rows); arm `a` minus arm `b` on the same questions, each question's share
    of seeds answered right (:func:`utils.evaluation.paired_bootstrap`, whole tables resampled: the spread of
    the questions, for these seeds); and the same difference seed by seed, in points, with Student's t
    interval of their mean (:func:`utils.evaluation.t_interval`: the spread over seeds, which a rerun meets).
    Returns (by_kind, paired, (per-seed differences, t estimate))."""
    from .evaluation import paired_bootstrap, t_interval

    missing = {"supervision", "seed", "question", "kind", "table", "correct"} - set(runs.columns)
    if missing:
        raise ValueError(f"compare_supervision: the runs lack the columns {sorted(missing)}")
    if not {a, b} <= set(runs["supervision"]):
        raise ValueError(f"compare_supervision needs runs {a!r} and {b!r}, got {sorted(set(runs['supervision']))}")
    by_kind = runs.pivot_table(index="kind", columns=["supervision", "seed"], values="correct", aggfunc="mean")
    by_kind.loc["all"] = runs.groupby(["supervision", "seed"])["correct"].mean()
    share = runs.pivot_table(index=["question", "table"], columns="supervision", values="correct", aggfunc="mean")
    paired = paired_bootstrap(share[a], share[b], groups=share.index.get_level_values("table"), percent=True)
    seeds = sorted(set(by_kind[a].columns) & set(by_kind[b].columns))
    points = [100 * float(by_kind.loc["all", (a, k)] - by_kind.loc["all", (b, k)]) for k in seeds]
    return by_kind, paired, (points, t_interval(points, digits=1) if len(points) > 1 else None)


def row_count_floor(examples):
    """The share of `examples` whose gold answer is their table's number of rows: what a system that answers
    every question with COUNT over a whole column gets right."""
    if not examples:
        raise ValueError("row_count_floor: no example given")
    return sum(_is_number(str(e.gold)) and float(e.gold) == len(e.table) for e in examples) / len(examples)


def supervision_lines(runs, examples, comparisons, *, references=True, arms=None):
    """The record of :func:`supervision_runs` (scored on `examples`) in lines: with `references`, two that need no
    training first (the row-count floor, :func:`row_count_floor`, and the keyword rule, :func:`evaluate_rule`),
    the accuracy over its seeds of every arm in `arms` (default: every arm of the runs; arms of
    :data:`SUPERVISION_ARMS` in its order, others, such as arms renamed for their start, after them as given), then
    each (a, b) of `comparisons` as :func:`compare_supervision` reads it."""
    from .evaluation import over_seeds

    if runs["question"].nunique() != len(examples):
        raise ValueError(f"the runs are scored on {runs['question'].nunique()} questions, {len(examples)} examples given")
    lines = [f"  {'floor: COUNT of a column':26s} {row_count_floor(examples):.1%}, the share whose answer is the table's number of rows",
             f"  {'keyword rule':26s} {evaluate_rule(examples)['correct'].mean():.1%}, no training"] if references else []
    present = set(runs["supervision"])
    shown = [a for a in SUPERVISION_ARMS if a in present and (arms is None or a in arms)]
    shown += [a for a in (arms or []) if a in present and a not in SUPERVISION_ARMS]  # renamed arms, as given
    for arm in shown:
        share = runs[runs["supervision"] == arm].groupby("seed")["correct"].mean()
        lines.append(f"  {arm:{max(26, *map(len, shown))}s} {over_seeds(share, percent=True)} of the {len(examples)} held-out questions")
    for a, b in comparisons:
        _, paired, (points, over_seed) = compare_supervision(runs, a, b)
        lines += [f"{a} - {b}:", f"  questions' shares, tables resampled: {paired}",
                  f"  seed by seed: {', '.join(f'{p:+.1f}' for p in points)} points; mean {over_seed} points "
                  f"(t, {len(points) - 1} df)"]
    return lines


def supervision_overview(records, examples, arms=("strong, WTQ temperature", "weak")):
    """Accuracy by question kind (rows, "all" last) of the `arms` of several records of :func:`supervision_runs`,
    all scored on `examples` (`records` maps a name to its runs, as :func:`read_supervision_record` gives them), as
    means over each record's seeds, beside two references that need no training: the keyword rule and the row-count
    floor (the share of each kind whose answer is its table's number of rows). Columns "name: arm"; a record that
    lacks one of the arms leaves it out. For :func:`utils.plot_heatmap`."""
    if not records:
        raise ValueError("supervision_overview: no record given")
    columns = {}
    for name, runs in records.items():
        by_kind = supervision_by_kind(runs, examples)
        for arm in arms:
            if arm in by_kind.columns:
                columns[f"{name}: {arm}"] = by_kind[arm]
    if not columns:
        raise ValueError(f"supervision_overview: none of the records has the arms {list(arms)}")
    kinds = pd.Series([e.kind for e in examples])
    floor = {kind: row_count_floor([e for e, k in zip(examples, kinds) if k == kind]) for kind in sorted(set(kinds))}
    columns["keyword rule"] = by_kind["keyword rule"]
    columns["floor: COUNT of a column"] = pd.Series({**floor, "all": row_count_floor(examples)})
    table = pd.DataFrame(columns)
    return table.loc[[k for k in table.index if k != "all"] + ["all"]]


def supervision_seed_counts(records, arms=("strong, WTQ temperature", "weak"), share=0.5):
    """How many seeds of each arm answer at least ``share`` of a question kind right: the per-seed reading behind
    :func:`supervision_overview`'s means, with its rows and columns (less the two references). Cells read "k of n"."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    columns = {}
    for name, runs in records.items():
        for arm in arms:
            rows = runs[runs["supervision"] == arm]
            if rows.empty:
                continue
            by_seed = rows.pivot_table(index="kind", columns="seed", values="correct", aggfunc="mean")
            by_seed.loc["all"] = rows.groupby("seed")["correct"].mean()
            columns[f"{name}: {arm}"] = (by_seed >= share).sum(axis=1).astype(str) + f" of {by_seed.shape[1]}"
    if not columns:
        raise ValueError(f"supervision_seed_counts: none of the records has the arms {list(arms)}")
    table = pd.DataFrame(columns)
    return table.loc[[k for k in table.index if k != "all"] + ["all"]]


def answer_patterns(records, arm="weak"):
    """What each seed of ``arm`` answered with, record by record (runs as :func:`read_supervision_record` gives them,
    from records that store operators: :func:`supervision_record`): the share of the held-out questions it got
    right, the share answered with each operator, and the share where it selected no cell at all (an answer that
    executes to nothing and is wrong). One row per (record, seed)."""
    rows = {}
    for name, runs in records.items():
        runs = runs[runs["supervision"] == arm]
        if runs.empty:
            continue
        if "operator" not in runs:
            raise ValueError(f"answer_patterns: the record {name!r} stores no operators (rerun it with today's "
                             "scripts/tapas_supervision.py)")
        for seed, run in runs.groupby("seed"):
            shares = run["operator"].value_counts(normalize=True)
            rows[(name, seed)] = {"right": run["correct"].mean(),
                                  **{op: shares.get(op, 0.0) for op in OPERATOR_LETTERS},
                                  "no cell": (run["cells"] == 0).mean()}
    if not rows:
        raise ValueError(f"answer_patterns: none of the records has the arm {arm!r}")
    table = pd.DataFrame(rows).T
    table.index.names = ["record", "seed"]
    return table


def supervision_by_kind(runs, examples):
    """Accuracy by question kind of every arm in the record of :func:`supervision_runs` (means over its seeds),
    beside the keyword rule on the same `examples`."""
    by_kind = runs.pivot_table(index="kind", columns="supervision", values="correct", aggfunc="mean")
    by_kind.loc["all"] = runs.groupby("supervision")["correct"].mean()
    rule = evaluate_rule(examples)
    by_kind["keyword rule"] = pd.concat([rule.groupby("kind")["correct"].mean(), pd.Series({"all": rule["correct"].mean()})])
    return by_kind[[a for a in SUPERVISION_ARMS if a in by_kind.columns] + ["keyword rule"]]


def shown_command(command):
    """A recorded command as a reader can use it: folders under /tmp, where the stages were saved on the machine
    that trained them, written as <stage 4>, <stage 5/seed0>, <stage 5, pre-trained/seed0> and so on."""
    import re

    return re.sub(r"/tmp/([\w.-]+(?:/[\w.-]+)*)",
                  lambda m: f"<{m.group(1).replace('stage', 'stage ', 1).replace('_mlm', ', pre-trained')}>", command)


OPERATOR_LETTERS = {"NONE": "N", "SUM": "S", "AVERAGE": "A", "COUNT": "C"}
"""How :func:`supervision_record` writes each answer's operator: one letter per question."""


def supervision_record(runs, *, command, **settings):
    """:func:`supervision_runs`' frame as a compact JSON-able record: the command that made it, its
    settings, the evaluation questions' kinds and tables once, and per run a string of 1s and 0s and, where the
    frame has them, a string of operator letters (:data:`OPERATOR_LETTERS`) and the selected-cell counts, separated by
    spaces."""
    first = runs[(runs["supervision"] == runs["supervision"].iloc[0]) & (runs["seed"] == runs["seed"].iloc[0])]
    record = dict(command=command, **settings, kinds=first["kind"].tolist(), tables=[int(t) for t in first["table"]],
                  runs=[])
    for (supervision, seed), run in runs.groupby(["supervision", "seed"], sort=True):
        run = run.sort_values("question")
        entry = dict(supervision=supervision, seed=int(seed), seconds=round(float(run["seconds"].iloc[0]), 1),
                     correct="".join("1" if c else "0" for c in run["correct"]))
        if "operator" in run:
            entry.update(operators="".join(OPERATOR_LETTERS[o] for o in run["operator"]),
                         cells=" ".join(str(int(n)) for n in run["cells"]))
        record["runs"].append(entry)
    return record


def read_supervision_record(record):
    """The frame of :func:`supervision_runs` back from :func:`supervision_record`'s record (a dict or a path)."""
    import json

    if not isinstance(record, dict):
        record = json.loads(Path(record).read_text())
    rows = []
    for run in record["runs"]:
        if len(run["correct"]) != len(record["kinds"]):
            raise ValueError(f"run {run['supervision']}/{run['seed']} has {len(run['correct'])} outcomes "
                             f"for {len(record['kinds'])} questions")
        part = [dict(supervision=run["supervision"], seed=run["seed"], question=i, kind=kind, table=table,
                     correct=flag == "1", seconds=run["seconds"])
                for i, (kind, table, flag) in enumerate(zip(record["kinds"], record["tables"], run["correct"]))]
        if "operators" in run:
            names = {letter: name for name, letter in OPERATOR_LETTERS.items()}
            counts = [int(n) for n in run["cells"].split()]
            if not len(run["operators"]) == len(counts) == len(part):
                raise ValueError(f"run {run['supervision']}/{run['seed']} has {len(run['operators'])} operators and "
                                 f"{len(counts)} cell counts for {len(part)} questions")
            for row, letter, cells in zip(part, run["operators"], counts):
                row.update(operator=names[letter], cells=cells)
        rows += part
    return pd.DataFrame(rows)


def selection_outcome(pipe, examples):
    """Where a lookup's answer lands: for each example, what the pipeline answered with (an operator,
    or "no cell", "one cell", "several cells" when it selects without an operator), whether the
    selected cells lie in the gold column ("right", "wrong", or "none" when nothing is selected)
    and in the gold rows ("right" when the selected rows are exactly the gold ones), and whether the
    executed answer is right. Denotation scoring can call a wrong row right when its cell holds the
    same value as the gold one; ``gold value repeats`` marks the questions where that can happen."""
    rows = []
    for e in examples:
        answer = pipe(table=e.table, query=e.question)
        cells = [tuple(c) for c in answer["coordinates"]]
        operator = answer.get("aggregator", "NONE")
        if operator != "NONE":
            answered = operator
        else:
            answered = "no cell" if not cells else "one cell" if len(cells) == 1 else "several cells"
        gold_rows, gold_columns = {r for r, _ in e.coordinates}, {c for _, c in e.coordinates}
        column = "none" if not cells else "right" if {c for _, c in cells} <= gold_columns else "wrong"
        row = "none" if not cells else "right" if {r for r, _ in cells} == gold_rows else "wrong"
        try:
            value = execute_pipeline_answer(answer)
        except ValueError:
            value = None
        repeats = len(gold_columns) == 1 and sum(
            denotation_match(e.table.iat[r, next(iter(gold_columns))], e.gold) for r in range(len(e.table))) > 1
        rows.append(dict(kind=e.kind, answered=answered, column=column, row=row, gold_value_repeats=repeats,
                         correct=value is not None and denotation_match(value, e.gold)))
    return pd.DataFrame(rows)


def selection_crosstab(outcome):
    """A :func:`selection_outcome` frame counted by column and row found, right and wrong answers apart."""
    where = outcome["column"].map({"right": "right column", "wrong": "wrong column", "none": "no cell"}).rename("column")
    row = outcome["row"].map({"right": "right row", "wrong": "wrong row", "none": "no cell"}).rename("row")
    table = pd.crosstab([where, row], outcome["correct"].map({True: "answered right", False: "answered wrong"}),
                        margins=True, margins_name="all")
    return table.rename_axis(columns=None)


# ---------------------------------------------------------------------------------------------
# The simplest rule a sceptic would try first: cue words pick the operator, string match the cells
# ---------------------------------------------------------------------------------------------

# Cue words from the training and validation phrasings, plus common comparatives that no template uses; none
# that only the held-out phrasings (the unseen-phrasings split) or the test phrasings use.
_RULE_MORE = ("more than", "above", "over", "greater", "higher", "longer", "larger", "bigger", "at least")
_RULE_LESS = ("less than", "fewer", "below", "under", "lower", "beneath", "shorter", "at most")
_RULE_SUM = ("total", "sum", "summed", "add", "added", "altogether", "combined", "together", "in all")
_RULE_AVERAGE = ("average", "averaged", "mean")


def _is_number(cell):
    try:
        parse_number(cell)
    except ValueError:
        return False
    return True


def _rule_words(text):
    """Lower-case words with a plural 's' stripped, so 'goals' meets the header 'goals' and 'goal'."""
    import re

    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in re.findall(r"[a-z]+", text.lower())}


def _theme_tables(themes, draws=30):
    """(schema, numeric columns) of ``draws`` seeded tables of every theme in ``themes``: enough draws to meet every
    column a theme's pool can draw, since a table keeps only some of them."""
    for make in themes.values():
        for seed in range(draws):
            _, schema, numeric = make(random.Random(seed), 8)
            yield schema, numeric


_TRAINING_SYNONYMS = None


def training_synonyms():
    """Every header of the training themes (the random schema aside) -> the phrases training questions name its
    column by: the column's own phrases, the broad generator's synonyms, and for a key column the key phrases.
    What a keyword rule would be given to follow the training vocabulary ("appearances" for games)."""
    global _TRAINING_SYNONYMS
    if _TRAINING_SYNONYMS is None:
        names = {}
        for schema, numeric in _theme_tables(BROAD_THEMES):
            names.setdefault(schema["key"], set()).update(schema["key_phrases"])
            for header, column in numeric.items():
                names.setdefault(header, set()).update([*column.phrases, *_SYNONYMS.get(header, [])])
        _TRAINING_SYNONYMS = {header: sorted(phrases) for header, phrases in sorted(names.items())}
    return _TRAINING_SYNONYMS


def _rule_column(question, table, columns, skip=(), synonyms=None):
    """The column among ``columns`` whose header (or, with ``synonyms``, one of the header's phrases) shares most
    words with the question (less the words in ``skip``); on a tie, the one with fewest words the question lacks,
    then the last."""
    asked = _rule_words(question) - _rule_words(" ".join(skip))

    def fit(c):
        header = table.columns[c]
        names = [header.replace("_", " "), *(synonyms or {}).get(header, [])]
        return max((len(asked & words), -len(words - asked)) for words in map(_rule_words, names))

    return max(columns, key=lambda c: (*fit(c), c))


def keyword_rule(table, question, *, synonyms=None):
    """Answer ``question`` over ``table`` (every cell a str) with cue words and string matching only.

    Returns (operator, cells) as the pipeline would: the operator is COUNT when the question says
    "how many" (or "number of", "count") and has a comparison word and a number, or says nothing
    else; SUM or AVERAGE on their cue words; otherwise NONE, a lookup. The column is the one whose
    header shares most words with the question (numeric columns for SUM, AVERAGE and conditions);
    a lookup's row is the one whose cell text appears in the question (spaces or hyphens alike),
    else the one holding a number of the question. No learning: a baseline. With ``synonyms`` (header -> phrases,
    as :func:`training_synonyms` gives) a column is also found by any of its header's phrases.
    """
    import re

    if not isinstance(table, pd.DataFrame) or not isinstance(question, str):
        raise TypeError("keyword_rule needs a DataFrame of str cells and a str question")
    text = question.lower()
    flat = re.sub(r"[-\s]+", " ", text)
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)]
    numeric = [c for c in range(table.shape[1]) if all(_is_number(v) for v in table.iloc[:, c])]
    said = lambda cues: any(re.search(rf"\b{cue}\b", text) for cue in cues)  # noqa: E731 - whole words only
    counting = said(("how many", "number of", "count"))
    rows = range(len(table))

    def named_row():  # a row whose text cell the question names
        for r in rows:
            for c in range(table.shape[1]):
                cell = re.sub(r"[-\s]+", " ", str(table.iat[r, c]).lower())
                if c not in numeric and len(cell) > 2 and cell in flat:
                    return r, c
        return None

    more, less = said(_RULE_MORE), said(_RULE_LESS)
    if counting and numbers and (more or less) and numeric:
        counted = re.findall(r"\b(?:how many|number of|count the|count)\s+(?:of the\s+)?(\w+)", text)  # the rows' noun
        column = _rule_column(question, table, numeric, skip=counted, synonyms=synonyms)
        v, greater = numbers[-1], more and not less
        return "COUNT", [(r, column) for r in rows
                         if (parse_number(table.iat[r, column]) > v if greater else parse_number(table.iat[r, column]) < v)]
    found = named_row()
    if found is None and numbers:  # a lookup by a number: the row holding it
        for r in rows:
            for c in numeric:
                if parse_number(table.iat[r, c]) == numbers[-1]:
                    found = r, c
                    break
            if found:
                break
    if found is not None and not said(_RULE_SUM + _RULE_AVERAGE):
        row, key = found
        return "NONE", [(row, _rule_column(question, table, [c for c in range(table.shape[1]) if c != key], synonyms=synonyms))]
    for operator, cues in (("SUM", _RULE_SUM), ("AVERAGE", _RULE_AVERAGE)):
        if said(cues) and numeric:
            column = _rule_column(question, table, numeric, synonyms=synonyms)
            return operator, [(r, column) for r in rows]
    if counting:
        return "COUNT", [(r, 0) for r in rows]
    return "NONE", [(0, _rule_column(question, table, range(table.shape[1]), synonyms=synonyms))]


def evaluate_rule(examples, *, synonyms=None):
    """:func:`keyword_rule` on every example: a DataFrame like :func:`evaluate`'s (column ``rule``
    instead of ``tapas``), with the executed answer and whether it is right. ``synonyms`` as
    :func:`keyword_rule` takes them."""
    rows = []
    for e in examples:
        operator, cells = keyword_rule(e.table, e.question, synonyms=synonyms)
        try:
            value = execute_answer(operator, [e.table.iat[r, c] for r, c in cells])
        except ValueError:
            value = None
        rows.append(dict(kind=e.kind, theme=e.theme, question=e.question, rule=operator, executed=value, gold=e.gold,
                         correct=value is not None and denotation_match(value, e.gold)))
    return pd.DataFrame(rows)


def side_by_side(results):
    """Accuracy by question kind of several systems on several splits, as text "84% of 30": ``results``
    maps (split, system) to a frame of :func:`evaluate` or :func:`evaluate_rule`."""
    if not results:
        raise ValueError("side_by_side needs at least one (split, system) -> results entry")
    columns = {}
    for (split, system), frame in results.items():
        scores = accuracy_by_kind(frame)
        columns[(split, system)] = {kind: f"{row.accuracy:.0%} of {int(row.asked)}" for kind, row in scores.iterrows()}
    table = pd.DataFrame(columns)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["split", "system"])
    return table


# ---------------------------------------------------------------------------------------------
# A language model writes pandas; a restricted evaluator runs it
# ---------------------------------------------------------------------------------------------

PANDAS_METHODS = frozenset({
    "loc", "iloc", "at", "iat", "sum", "mean", "median", "count", "max", "min", "idxmax", "idxmin", "item", "size",
    "shape", "nunique", "unique", "tolist", "sort_values", "head", "tail", "nlargest", "nsmallest", "abs", "round",
    "values", "index", "columns", "between", "isin", "eq", "ne", "gt", "lt", "ge", "le", "astype", "str", "lower",
    "contains",
})
"""The attributes a generated expression may use: DataFrame and Series methods that read, select and aggregate."""

_SAFE_NODES = ("Expression", "Name", "Load", "Constant", "Attribute", "Subscript", "Slice", "Tuple", "List", "Call",
               "keyword", "Compare", "BinOp", "UnaryOp", "BoolOp", "Add", "Sub", "Mult", "Div", "FloorDiv", "Mod",
               "BitAnd", "BitOr", "Invert", "Not", "USub", "UAdd", "And", "Or", "Eq", "NotEq", "Lt", "LtE", "Gt", "GtE",
               "In", "NotIn")
_SAFE_FUNCTIONS = {"len": len, "round": round, "abs": abs, "int": int, "float": float, "str": str}


class UnsafeCode(ValueError):
    """A generated expression that the restricted evaluator refuses to run, with the reason."""


def _check_expression(code):
    import ast

    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    if len(code) > 400:
        raise UnsafeCode(f"the expression is {len(code)} characters long; at most 400")
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError as error:
        raise UnsafeCode(f"not one Python expression: {error.msg}") from None
    for node in ast.walk(tree):
        kind = type(node).__name__
        if kind not in _SAFE_NODES:
            raise UnsafeCode(f"{kind} is not allowed (only one expression over df: selections, comparisons, "
                             "arithmetic and the methods in tapas.PANDAS_METHODS)")
        if isinstance(node, ast.Name) and node.id != "df" and node.id not in _SAFE_FUNCTIONS:
            raise UnsafeCode(f"the name {node.id[:30]!r} is not allowed: only df and {', '.join(_SAFE_FUNCTIONS)}")
        if isinstance(node, ast.Attribute) and (node.attr.startswith("_") or node.attr not in PANDAS_METHODS):
            raise UnsafeCode(f"the attribute {node.attr!r} is not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in _SAFE_FUNCTIONS:
            raise UnsafeCode(f"calling {node.func.id!r} is not allowed")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bytes)) and len(node.value) > 100:
                raise UnsafeCode("a string constant longer than 100 characters")
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool) and abs(node.value) > 1e12:
                raise UnsafeCode(f"the constant {node.value!r} is too large")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and any(
                isinstance(side, ast.Constant) and isinstance(side.value, (str, bytes)) for side in (node.left, node.right)):
            raise UnsafeCode("repeating a string is not allowed")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and _int_factor(node) > 1000:
            raise UnsafeCode("multiplying by more than 1000 is not allowed (a str or list would be repeated that often)")
    return compile(tree, "<generated>", "eval")


def _int_factor(node):
    """The product of the int constants a chain of multiplications applies: str(df) * 1000 * 1000 gives 10**6."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return abs(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _int_factor(node.left) * _int_factor(node.right)
    return 1


def run_restricted(code, frame, *, timeout=2.0):
    """Evaluate one generated pandas expression over ``frame`` (named ``df``), refusing anything else.

    The expression is parsed first and refused (:class:`UnsafeCode`, with the reason) unless every
    node is a selection, comparison, arithmetic, a constant of sane size, the name ``df``, one of a
    few built-ins (len, round, abs, int, float, str) or an attribute in :data:`PANDAS_METHODS`: no
    imports, no statements, no lambdas or comprehensions, no underscored attributes, no other names.
    It then runs with no built-ins, on a copy of the frame, for at most ``timeout`` seconds (on a
    platform with ``signal.setitimer``, in the main thread). Returns the value as :func:`run_pandas` does.
    """
    import signal
    import threading

    compiled = _check_expression(code)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a DataFrame, got {type(frame).__name__}")
    timed = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()

    def stop(signum, stack):
        raise TimeoutError(f"the expression ran longer than {timeout} s")

    if timed:
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        value = eval(compiled, {"__builtins__": {}}, dict(_SAFE_FUNCTIONS, df=frame.copy()))  # noqa: S307 - checked above
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        value = value.item()
    if isinstance(value, float):
        value = _as_int_if_whole(round(value, 9))
    return value


def numeric_frame(table):
    """A table of str cells as pandas would hold it: columns of numbers where every cell is one."""
    return table.apply(lambda column: pd.to_numeric(column) if all(_is_number(v) for v in column) else column)


def pandas_prompt(frame, question):
    """Chat messages asking a code model for one pandas expression that answers ``question`` over ``frame``."""
    return [
        {"role": "system", "content": "You write one Python expression with pandas. No imports, no assignments, "
                                      "no explanation: the expression only."},
        {"role": "user", "content": f"The DataFrame df is:\n{frame.to_string(index=False)}\n\nWrite one pandas "
                                    f"expression over df whose value answers: {question}"},
    ]


def extract_expression(reply):
    """The expression in a model's reply: the first code block's first line, else the reply's first line."""
    import re

    block = re.search(r"```(?:python)?\s*\n?(.*?)```", reply, flags=re.S)
    text = (block.group(1) if block else reply).strip()
    return text.splitlines()[0].strip() if text else ""


def _reply(generate, messages, max_new_tokens):
    """The text a chat text-generation pipeline answers to `messages`, greedily."""
    return generate(messages, max_new_tokens=max_new_tokens, do_sample=False)[0]["generated_text"][-1]["content"]


def ask_code_model(generate, frame, question, gold=None, *, max_new_tokens=60):
    """One question to a text-generation pipeline ``generate`` that writes pandas: its expression, the value
    the restricted evaluator gives (None, with the reason, when it refuses or the code fails), the check."""
    messages = pandas_prompt(frame, question)
    reply = _reply(generate, messages, max_new_tokens)
    code, value, problem = extract_expression(reply), None, ""
    try:
        value = run_restricted(code, frame)
    except (UnsafeCode, TimeoutError) as error:
        problem = f"refused: {error}"
    except Exception as error:  # noqa: BLE001 - the model's code may fail in any way pandas can
        problem = f"failed: {type(error).__name__}"
    row = dict(question=question, code=code, executed=value, problem=problem)
    if gold is not None:
        row.update(gold=gold, correct=value is not None and not isinstance(value, (pd.Series, pd.DataFrame))
                   and denotation_match(value if not isinstance(value, list) else value, gold))
    return row


def answer_prompt(frame, question):
    """Chat messages asking a language model for the answer itself, with no program: the table as text, the question."""
    return [
        {"role": "system", "content": "You answer questions about a table. Reply with the answer only: one number or one "
                                      "cell's text, no explanation."},
        {"role": "user", "content": f"The table is:\n{frame.to_string(index=False)}\n\nQuestion: {question}"},
    ]


def ask_model_directly(generate, frame, question, gold=None, *, max_new_tokens=20):
    """One question to a text-generation pipeline ``generate`` that answers from the table as text, with no program
    (:func:`answer_prompt`): the first line of its reply, stripped of a final full stop, as the answer, and the check
    against `gold` (:func:`denotation_match`), as :func:`ask_code_model` reports a program's."""
    reply = _reply(generate, answer_prompt(frame, question), max_new_tokens)
    answer = (reply.strip().splitlines() or [""])[0].strip().rstrip(".")
    row = dict(question=question, code="", executed=answer, problem="" if answer else "empty reply")
    if gold is not None:
        row.update(gold=gold, correct=bool(answer) and denotation_match(answer, gold))
    return row


# ---------------------------------------------------------------------------------------------
# Two other tasks on the same table: TabFact's entailment (TAPAS) and TAPEX's generated answers
# ---------------------------------------------------------------------------------------------

def _checked_question(question, what="question"):
    if not isinstance(question, str):
        raise TypeError(f"the {what} must be a str, got {type(question).__name__}: {question!r}")
    if not question.strip():
        raise ValueError(f"the {what} is empty: there is nothing to ask of the table")
    return question.strip()


def verify_statements(model, tokenizer, table, statements):
    """TabFact's task: how likely ``model`` (a TapasForSequenceClassification) finds each statement about ``table``.

    Each statement is encoded with the table by ``tokenizer`` (a TapasTokenizer; rows that do not fit in its 512
    tokens are dropped, as ``truncation=True`` does), and the classifier's logits become probabilities. Returns a
    DataFrame with one row per statement: the statement, the probability of every class under the name
    ``model.config.id2label`` gives it (the probabilities of a row sum to 1), and the most likely class.
    """
    import torch

    if isinstance(statements, str):
        statements = [statements]
    statements = [_checked_question(s, "statement") for s in statements]
    if not statements:
        raise ValueError("no statement to verify")
    table = prepare_table(table)
    encoded = tokenizer(table=table, queries=statements, padding="longest", truncation=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                       token_type_ids=encoded["token_type_ids"]).logits
    labels = [model.config.id2label[i] for i in range(logits.shape[-1])]
    scores = pd.DataFrame(logits.softmax(-1).numpy(), columns=labels)
    scores.insert(0, "statement", statements)
    scores["predicted"] = [labels[i] for i in logits.argmax(-1).tolist()]
    return scores


TAPEX_MAX_CELL_LENGTH = 15
"""TapexTokenizer's ``max_cell_length``: a cell of this many BPE pieces or more kept its first 15 pieces."""


def tapex_input(table, question, *, tokenizer=None, max_cell_length=TAPEX_MAX_CELL_LENGTH):
    """The text a TAPEX model reads: the question, a space, then the table flattened row by row, all lower-cased.

    ``"how many? col : chapter | name row 1 : 0 | introduction row 2 : 1 | text classification"``: the header after
    ``col :``, each row after ``row i :`` (counted from 1), cells joined by `` | ``. This is the format of the
    ``TapexTokenizer`` that transformers removed in version 5 (``prepare_table_query`` and
    ``IndexedRowTableLinearize`` in src/transformers/models/deprecated/tapex/tokenization_tapex.py, transformers
    4.x; its ``do_lower_case=True`` lower-cased the whole text). With a ``tokenizer`` (BART's byte-level BPE),
    a cell that it splits into ``max_cell_length`` pieces or more keeps its first ``max_cell_length`` pieces, as
    TapexTokenizer's ``truncate_cell`` did; without one, cells are kept whole. Rows are never dropped here:
    :func:`ask_tapex` refuses an input longer than the model reads.
    """
    question = _checked_question(question)
    table = prepare_table(table)

    def cell(text):
        if tokenizer is None or not text.strip():
            return text
        pieces = tokenizer.tokenize(text)
        return tokenizer.convert_tokens_to_string(pieces[:max_cell_length]) if len(pieces) >= max_cell_length else text

    header = "col : " + " | ".join(str(name) for name in table.columns)
    rows = [f"row {i} : " + " | ".join(cell(text) for text in values)
            for i, values in enumerate(table.itertuples(index=False, name=None), start=1)]
    return " ".join([question, header, *rows]).lower()


def _read_value(text):
    """A generated answer as a value: a number where the text is one (an int when whole), else the text."""
    try:
        return _as_int_if_whole(parse_number(text))
    except ValueError:
        return text


def ask_tapex(model, tokenizer, table, question, gold=None, *, max_new_tokens=32):
    """One question to a TAPEX model (a BartForConditionalGeneration fine-tuned on table QA): the answer it writes.

    The input is :func:`tapex_input`, encoded by ``tokenizer`` (BART's byte-level BPE; ``BartTokenizer`` loads a
    TAPEX repository whose tokenizer_config.json still names ``TapexTokenizer``). An input longer than the model's
    ``max_position_embeddings`` (1,024 for BART) raises ValueError naming both lengths, rather than being cut: a
    table cut silently gives sums and counts over the rows that were kept. Returns, as :func:`ask` does, the
    question, the generated text (``tapex``), its value (``executed``: a number where the text is one) and, given
    ``gold``, whether the two agree by :func:`denotation_match`.
    """
    import torch

    text = tapex_input(table, question, tokenizer=tokenizer)
    encoded = tokenizer(text, return_tensors="pt")
    limit = model.config.max_position_embeddings
    length = encoded["input_ids"].shape[-1]
    if length > limit:
        raise ValueError(f"the question and the flattened table take {length} tokens, more than the {limit} "
                         f"positions the model reads: ask about fewer rows or columns (table.head(n), a filter)")
    model.eval()
    with torch.no_grad():
        generated = model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                                   max_new_tokens=max_new_tokens)
    answer = tokenizer.batch_decode(generated, skip_special_tokens=True)[0].strip()
    row = dict(question=question, tapex=answer, executed=_read_value(answer) if answer else None)
    if gold is not None:
        row.update(gold=gold, correct=bool(answer) and denotation_match(row["executed"], gold))
    return row


# ---------------------------------------------------------------------------------------------
# Reading the splits: how literally a question names its column, which template it follows
# ---------------------------------------------------------------------------------------------

def asked_column(example):
    """The header of the column whose value the question asks for (the last column its pandas
    one-liner names), or None for a count of rows, which names no column."""
    import re

    names = re.findall(r'"([^"]+)"', example.pandas)
    return names[-1] if names else None


def names_header(example):
    """True when every word of the asked column's header (underscores as spaces, a plural 's' dropped)
    is in the question: string matching can then find the column. None when no column is asked for."""
    column = asked_column(example)
    if column is None:
        return None
    return _rule_words(column.replace("_", " ")) <= _rule_words(example.question)


def header_share(examples):
    """(share, n): the share of the ``n`` questions that ask for a column whose header words they all repeat."""
    named = [flag for flag in (names_header(e) for e in examples) if flag is not None]
    if not named:
        raise ValueError("header_share: none of the examples asks for a column")
    return sum(named) / len(named), len(named)


def training_templates():
    """Every question template the training data used: the broad generator's "train" templates of every kind
    (which include the original generator's) and the columns' own lookup wordings, as (kind, template)."""
    found = [(kind, text) for kind, sets in TEMPLATES.items() for text, _ in sets["train"]]
    rng = random.Random(0)
    for maker in BROAD_THEMES.values():
        _, _, numeric = maker(rng, 8)
        found += [("lookup", text) for column in numeric.values() for text in column.lookup]
    return list(dict.fromkeys(found))


def closest_template(question, templates=None):
    """The training template that ``question`` follows, or failing that the nearest one.

    Returns (kind, template, follows, similarity). ``follows`` is True when the question is the
    template with its slots filled in (case aside, "what's" read as "what is"); ``similarity`` is
    difflib's ratio between the two as sequences of words, a slot matching no word, by which the
    nearest template is chosen."""
    import difflib
    import re

    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty str, got {question!r}")
    templates = training_templates() if templates is None else templates
    expand = lambda text: re.sub(r"\bwhat's\b", "what is", text.strip().lower())  # noqa: E731
    asked = expand(question)
    words = re.findall(r"[a-z0-9]+", asked)
    best = None
    for kind, text in templates:
        parts = re.split(r"(\{\w+\})", expand(text))
        follows = re.fullmatch("".join(".+?" if p.startswith("{") else re.escape(p) for p in parts), asked) is not None
        own = [w for p in parts for w in (["{slot}"] if p.startswith("{") else re.findall(r"[a-z0-9]+", p))]
        similarity = difflib.SequenceMatcher(None, own, words, autojunk=False).ratio()
        if best is None or (follows, similarity) > best[0]:
            best = ((follows, similarity), (kind, text, follows, similarity))
    return best[1]


TEST2_PARTS = ("test2", "test2, new themes", "test2, training themes", "test2, new-theme lookups")
"""The parts of the second test split that :func:`seed_runs` scores."""


def _split_parts(record, split="test2"):
    """A scored test split's questions (a frame) and a mask per part: whole, new themes, training themes, new themes'
    lookups by name, named after `split`."""
    questions = pd.DataFrame(record["questions"])
    new = questions["new theme"] == 1
    parts = [f"{split}{part}" for part in ("", ", new themes", ", training themes", ", new-theme lookups")]
    masks = dict(zip(parts, [new | ~new, new, ~new, new & (questions["kind"] == "lookup")]))
    return questions, masks


TEST3_PLANNED = (("redrawn, draws 0-2", "as shipped"), ("stage 4, redrawn, draws 0-2", "stage 4"),
                 ("rescaled", "as shipped"), ("as shipped", "keyword rule"), ("redrawn, draws 0-2", "keyword rule"))
"""The comparisons of scripts/tapas_test3.py's plan, the first one planned, the others descriptive. A name ending in
"draws 0-2" stands for each question's share of those draws answered right."""


def test3_recovered(record):
    """Per part of the third test split: the share of the questions that the shipped model as it is gets wrong
    which the redraw gets right, on average over its draws (the planned comparison's gain over what was missing)."""
    _, masks = _split_parts(record, split="test3")
    shipped = pd.Series(record["runs"]["as shipped"]["test3"], dtype=float)
    draws = pd.concat([pd.Series(run["test3"], dtype=float) for name, run in record["runs"].items()
                       if name.startswith("redrawn, draw ")], axis=1).mean(axis=1)
    return {part: float(draws[mask & (shipped == 0)].mean()) if (mask & (shipped == 0)).any() else float("nan")
            for part, mask in masks.items()}


def test3_lines(record):
    """The third test split in a line per part: the shipped model as it is, its three redrawn draws, the keyword
    rule, the planned comparison (the draws' mean minus as shipped, :func:`test3_results`) and the share of the
    missed answers that the redraw recovers (:func:`test3_recovered`)."""
    scores, comparisons = test3_results(record)
    recovered = test3_recovered(record)
    share = lambda run, part: scores.loc[run, part].split(" [")[0]  # noqa: E731
    draws = [name for name in scores.index if name.startswith("redrawn, draw ")]
    return [f"  {part:25s} as shipped {scores.loc['as shipped', part]}; redrawn {', '.join(share(d, part) for d in draws)}; "
            f"keyword rule {share('keyword rule', part)}; redrawn - as shipped "
            f"{comparisons[f'{part}: redrawn, draws 0-2 - as shipped']}; of the answers missed, "
            f"{recovered[part]:.0%} recovered" for part in scores.columns]


def _planned_results(record, split, planned, pooled, with_scores=True):
    """A record of runs scored once on `split` (0/1 per question), read by its plan: (scores, comparisons) as
    :func:`test3_results` describes; `pooled` maps a name to the runs whose answers it averages per question.
    ``with_scores=False`` skips the scores (None in their place), which resample every run."""
    from .evaluation import paired_bootstrap

    questions, masks = _split_parts(record, split=split)
    runs = {name: pd.Series(run[split], dtype=float) for name, run in record["runs"].items()}
    for name, members in pooled.items():
        if len(members) < 2:
            raise ValueError(f"{split}: the record has {len(members)} runs for {name!r}, the plan needs several")
        runs[name] = pd.concat([runs[m] for m in members], axis=1).mean(axis=1)
    scores = pd.DataFrame({name: {part: score_text(accuracy_by_kind(questions.assign(correct=run[split])[mask],
                                                                    groups="table").loc["all"])
                                  for part, mask in masks.items()} for name, run in record["runs"].items()}).T if with_scores else None
    comparisons = {f"{part}: {a} - {b}": paired_bootstrap(runs[a][mask], runs[b][mask], groups=questions["table"][mask],
                                                          percent=True)
                   for a, b in planned for part, mask in masks.items()}
    return scores, comparisons


def test3_results(record):
    """The record of scripts/tapas_test3.py read as its plan says: (scores, comparisons). Scores: one row per run,
    one column per part of the third test split (whole, new themes, training themes, new-theme lookups), as
    "84% [75%, 91%] of 30" with intervals that resample whole tables. Comparisons: {"part: a - b": Comparison} for
    every (a, b) of :data:`TEST3_PLANNED` (:func:`utils.evaluation.paired_bootstrap`, tables resampled)."""
    pooled = {f"{prefix}redrawn, draws 0-2": [name for name in record["runs"] if name.startswith(f"{prefix}redrawn, draw ")]
              for prefix in ("", "stage 4, ")}
    return _planned_results(record, "test3", TEST3_PLANNED, pooled)


TEST4_PLANNED = (("pre-trained, seeds 0-1", "no pre-training, seeds 0-1"), ("pre-trained, seed 0", "no pre-training, seed 0"),
                 ("pre-trained, seed 1", "no pre-training, seed 1"), ("pre-trained, seeds 0-1", "redrawn, draws 0-2"),
                 ("pre-trained, seeds 0-1", "keyword rule"))
"""The comparisons of scripts/tapas_pretrain.py's plan, the first one planned, the others descriptive; "seeds 0-1"
and "draws 0-2" stand for each question's share of those runs answered right."""


def test4_results(record):
    """The record of scripts/tapas_pretrain.py read as its plan says, as :func:`test3_results` reads the third
    test split's: (scores, comparisons), the comparisons those of :data:`TEST4_PLANNED`."""
    runs = list(record["runs"])
    pooled = {"pre-trained, seeds 0-1": [n for n in runs if n.startswith("pre-trained, seed ")],
              "no pre-training, seeds 0-1": ["no pre-training, seed 0", "no pre-training, seed 1"],
              "redrawn, draws 0-2": [n for n in runs if n.startswith("no pre-training, seed 0, redrawn, draw ")]}
    return _planned_results(record, "test4", TEST4_PLANNED, pooled)


def test4_lines(record):
    """The fourth test split in a line per part: each procedure's two seeds, the keyword rule, and the planned
    comparison (:func:`test4_results`)."""
    scores, comparisons = test4_results(record)
    share = lambda run, part: scores.loc[run, part].split(" [")[0]  # noqa: E731
    pretrained = [name for name in scores.index if name.startswith("pre-trained, seed ")]
    return [f"  {part:25s} no pre-training {share('no pre-training, seed 0', part)}, {share('no pre-training, seed 1', part)}; "
            f"pre-trained {', '.join(share(n, part) for n in pretrained)}; keyword rule {share('keyword rule', part)}; "
            f"pre-trained - not {comparisons[f'{part}: pre-trained, seeds 0-1 - no pre-training, seeds 0-1']}"
            for part in scores.columns]


def seed_runs(record):
    """The record of scripts/tapas_seeds.py as one row per run (the shipped model, each seed of the fifth
    stage, the keyword rule): the validation score its weights were chosen on (the validation split's
    tables of its own themes), the step they come from (0: the shipped weights), and its accuracy on the
    second test split, whole and in :data:`TEST2_PARTS`, as "84% [75%, 91%] of 30": 95% intervals that
    resample whole tables, Wilson's (marked *) where all or none are right."""
    questions, masks = _split_parts(record)
    rows = {}
    for name, run in record["runs"].items():
        answers = questions.assign(correct=run["test2"])
        row = {"validation, own themes": f"{run['validation']:.0%}" if "validation" in run else "-",
               "chosen step": f"{run['chosen_step']:,}" if "chosen_step" in run else "-"}
        for part, mask in masks.items():
            row[part] = score_text(accuracy_by_kind(answers[mask], groups="table").loc["all"])
        rows[name] = row
    return pd.DataFrame(rows).T


def test2_lines(record, shipped="stage 5, seed 0"):
    """The second test split in a line per part of :data:`TEST2_PARTS`: the `shipped` run's score with its
    interval (tables resampled), the fifth stage's seeds summarised (:func:`seed_comparisons`), and the shares
    of the fourth stage and of the keyword rule."""
    table, compared = seed_runs(record), seed_comparisons(record)
    share = lambda run, part: table.loc[run, part].split(" [")[0]  # noqa: E731
    return [f"  {part:25s} {table.loc[shipped, part]}; the seeds: {compared[part][0]}; "
            f"stage 4 {share('stage 4', part)}; keyword rule {share('keyword rule', part)}" for part in TEST2_PARTS]


def seed_comparisons(record, against="stage 4"):
    """Per part of :data:`TEST2_PARTS`: the fifth stage's seeds summarised (:func:`utils.evaluation.over_seeds`,
    the spread a rerun gives), each seed minus `against` on the same questions (:func:`utils.evaluation.mcnemar`
    with the tables as groups), and, under "mean over the seeds", each question's share of seeds that answered it
    right minus `against` (:func:`utils.evaluation.paired_bootstrap`, tables resampled): the one comparison of
    the procedure rather than of a seed. Returns {part: (SeedSummary, {name: Comparison})}."""
    from .evaluation import mcnemar, over_seeds, paired_bootstrap

    questions, masks = _split_parts(record)
    seeds = {name: run for name, run in record["runs"].items() if name.startswith("stage 5")}
    if against not in record["runs"] or len(seeds) < 2:
        raise ValueError(f"seed_comparisons needs a run {against!r} and at least two 'stage 5' seeds; "
                         f"the record has {list(record['runs'])}")
    base = pd.Series(record["runs"][against]["test2"])
    out = {}
    for part, mask in masks.items():
        answers = {name: pd.Series(run["test2"])[mask] for name, run in seeds.items()}
        summary = over_seeds([a.mean() for a in answers.values()], percent=True)
        versus = {name: mcnemar(a, base[mask], groups=questions["table"][mask]) for name, a in answers.items()}
        versus["mean over the seeds"] = paired_bootstrap(pd.concat(answers, axis=1).mean(axis=1), base[mask],
                                                         groups=questions["table"][mask], percent=True)
        out[part] = (summary, versus)
    return out


def synonym_rule_runs(seed_record, test3_record, test4_record):
    """The keyword rule given the training synonyms (:func:`training_synonyms`), scored afterwards on the second,
    third and fourth test splits: {split: frame of the record's questions with 0/1 columns "keyword rule" (as the
    record has it), "rule, training synonyms" and "shipped model"}. Each split is generated again from the call its
    record names, and must give the record's question kinds and its rule's answers, or a ValueError says so."""
    import re

    runs = {}
    for split, record in (("test2", seed_record), ("test3", test3_record), ("test4", test4_record)):
        made = re.match(r"generate_split\('(\w+)', (\d+)\)", record.get(split, ""))
        if made is None or made.group(1) != split:
            raise ValueError(f"{split}: the record does not name the generate_split call that made it: {record.get(split)!r}")
        examples = generate_split(split, int(made.group(2)))
        questions = pd.DataFrame(record["questions"])
        plain = evaluate_rule(examples)["correct"].astype(int)
        if [e.kind for e in examples] != list(questions["kind"]) or list(plain) != list(record["runs"]["keyword rule"][split]):
            raise ValueError(f"{split}: generated again, the split no longer matches its record (kinds or rule answers)")
        runs[split] = questions.assign(**{
            "keyword rule": plain, "rule, training synonyms": evaluate_rule(examples, synonyms=training_synonyms())["correct"].astype(int),
            "shipped model": record["runs"][SHIPPED_RUNS[split]][split]})
    return runs


def synonym_rule_table(runs):
    """Accuracy of the keyword rule, the rule given the training synonyms and the shipped model on every part of
    each split of :func:`synonym_rule_runs`, as "57% of 148"."""
    rows = {}
    for split, frame in runs.items():
        _, masks = _split_parts({"questions": frame}, split=split)
        for part, mask in masks.items():
            rows[part] = {system: f"{frame.loc[mask, system].mean():.0%} of {int(mask.sum())}"
                          for system in ("keyword rule", "rule, training synonyms", "shipped model")}
    return pd.DataFrame(rows).T


SHIPPED_RUNS = {"test2": "stage 5, seed 0", "test3": "as shipped", "test4": "no pre-training, seed 0"}
"""The run of the shipped model in the record of each later test split."""


def theme_level_rule_gap(seed_record, test3_record, test4_record):
    """The shipped model against the keyword rule theme by theme, over the new themes of the second, third and fourth
    test splits: a frame of each theme's accuracy for both and their difference, and the mean difference over the
    themes with an interval that resamples themes (:func:`utils.evaluation.paired_bootstrap`, each theme one item) and
    a sign-flip p-value. The split-level intervals resample tables within four themes each; this one speaks, a little,
    for new themes in general."""
    from .evaluation import paired_bootstrap

    rows = []
    for split, record in (("test2", seed_record), ("test3", test3_record), ("test4", test4_record)):
        questions = pd.DataFrame(record["questions"])
        new = questions["new theme"] == 1
        model, rule = (pd.Series(record["runs"][name][split]) for name in (SHIPPED_RUNS[split], "keyword rule"))
        for theme, index in questions[new].groupby("theme").groups.items():
            rows.append(dict(split=split, theme=theme, questions=len(index), model=model[index].mean(), rule=rule[index].mean()))
    themes = pd.DataFrame(rows).assign(difference=lambda t: t["model"] - t["rule"])
    return themes, paired_bootstrap(themes["model"], themes["rule"], percent=True)


def test_split_differences(seed_record, test3_record, test4_record, synonym_runs=None):
    """The second, third and fourth test splits side by side, for :func:`utils.plot_differences`: panels of
    {"split: part": Comparison}. The first holds the comparison each split was scored for (test2's last stage, each
    question's share of its seeds, minus the fourth stage, chosen after the per-seed rows had been read; test3's and
    test4's planned comparisons); the second the shipped model (seed 0 without pre-training) minus the keyword rule;
    with ``synonym_runs`` (:func:`synonym_rule_runs`) a third, the shipped model minus the rule given the training
    synonyms. Parts: whole split, new themes, new-theme lookups, training themes."""
    parts = {"": "whole split", ", new themes": "new themes", ", new-theme lookups": "new-theme lookups",
             ", training themes": "training themes"}
    from .evaluation import mcnemar

    seeds = [name for name in seed_record["runs"] if name.startswith("stage 5")]
    test2 = _planned_results(seed_record, "test2", (("mean over the seeds", "stage 4"),), {"mean over the seeds": seeds},
                             with_scores=False)[1]
    questions, masks = _split_parts(seed_record)
    shipped, rule = (pd.Series(seed_record["runs"][name]["test2"]) for name in ("stage 5, seed 0", "keyword rule"))
    test2.update({f"{part}: seed 0 - keyword rule": mcnemar(shipped[mask], rule[mask], groups=questions["table"][mask])
                  for part, mask in masks.items()})  # as seed_comparisons pairs a seed with the rule
    redrawn = [name for name in test3_record["runs"] if name.startswith("redrawn, draw ")]
    test3 = _planned_results(test3_record, "test3", (("redrawn, draws 0-2", "as shipped"), ("as shipped", "keyword rule")),
                             {"redrawn, draws 0-2": redrawn}, with_scores=False)[1]
    pretrained = [name for name in test4_record["runs"] if name.startswith("pre-trained, seed ")]
    test4 = _planned_results(test4_record, "test4", (("pre-trained, seeds 0-1", "no pre-training, seeds 0-1"),
                                                      ("no pre-training, seed 0", "keyword rule")),
                             {"pre-trained, seeds 0-1": pretrained,
                              "no pre-training, seeds 0-1": ["no pre-training, seed 0", "no pre-training, seed 1"]},
                             with_scores=False)[1]
    written_for, against_rule = {}, {}
    for split, changed, versus_rule in [(test2, "mean over the seeds - stage 4", "seed 0 - keyword rule"),
                                        (test3, "redrawn, draws 0-2 - as shipped", "as shipped - keyword rule"),
                                        (test4, "pre-trained, seeds 0-1 - no pre-training, seeds 0-1",
                                         "no pre-training, seed 0 - keyword rule")]:
        name = next(iter(split)).split(":")[0].split(",")[0]
        for suffix, part in parts.items():
            written_for[f"{name}: {part}"] = split[f"{name}{suffix}: {changed}"]
            against_rule[f"{name}: {part}"] = split[f"{name}{suffix}: {versus_rule}"]
    panels = {"the change each split was scored for": written_for, "the shipped model minus the keyword rule": against_rule}
    if synonym_runs is not None:
        panels["the shipped model minus the rule + synonyms"] = with_synonyms = {}
        for split, frame in synonym_runs.items():
            _, masks = _split_parts({"questions": frame}, split=split)
            for suffix, part in parts.items():
                mask = masks[f"{split}{suffix}"]
                with_synonyms[f"{split}: {part}"] = mcnemar(frame["shipped model"][mask], frame["rule, training synonyms"][mask],
                                                            groups=frame["table"][mask])
    label = lambda key: key.replace("test2:", "test2 (no plan):")  # noqa: E731 - its comparisons were chosen after reading
    return {name: {label(k): v for k, v in panel.items()} for name, panel in panels.items()}


def table_ids(examples):
    """One int per example naming its table (examples about the same table object share it), for
    intervals and paired tests that resample whole tables."""
    ids = {}
    return [ids.setdefault(id(e.table), len(ids)) for e in examples]


def score_text(score):
    """A score row (right, asked, accuracy, low, high) as "84% [75%, 91%] of 30". At 0% or 100% a table
    bootstrap cannot move, so Wilson's interval is shown instead, marked *."""
    from .evaluation import wilson

    right, asked = int(score["right"]), int(score["asked"])
    low, high, mark = score["low"], score["high"], ""
    if right in (0, asked) or pd.isna(low):
        interval = wilson(right, asked)
        low, high, mark = interval.low, interval.high, "*"
    return f"{score['accuracy']:.0%} [{low:.0%}, {high:.0%}]{mark} of {asked}"


def _cell_probabilities(model, tokenizer, table, question):
    import torch

    inputs = tokenizer(table=table, queries=question, return_tensors="pt", truncation=True)
    with torch.no_grad():
        outputs = model(**inputs)
    operator = model.config.aggregation_labels[int(outputs.logits_aggregation.argmax())]
    return cell_probabilities(inputs, outputs.logits, table.shape), operator


def plot_cell_probabilities(model, tokenizer, table, question, ax, title=None, colorbar=True):
    """The model's mean cell probabilities for ``question`` over ``table`` (after its single-column selection),
    as a heatmap on ``ax`` on a fixed 0-1 scale (its colour bar drawn unless `colorbar` is False, for panels that
    share one); rows labelled by the first text column. Returns the predicted operator."""
    from .plotting import plot_heatmap

    probabilities, operator = _cell_probabilities(model, tokenizer, table, question)
    text = [c for c in table.columns if not all(_is_number(v) for v in table[c])]
    rows = list(table[text[0]]) if text else list(range(len(table)))
    plot_heatmap(probabilities, rows, list(table.columns), fmt=".2f", ax=ax, cbar_label="mean cell probability", vmin=0, vmax=1,
                 xlabel="column", title=f"{title or question}\n(operator {operator}; other columns forced to 0)",
                 colorbar=colorbar)
    return operator


def where_it_looks(model, tokenizer, example):
    """One line on a lookup: the column the model selects against the gold one, the row it is surest of in that
    column with its mean cell probability, and the probability of the gold row's cell in the same column (the
    pipeline keeps cells above 0.5). Rows are named by the table's first text column."""
    probabilities, _ = _cell_probabilities(model, tokenizer, example.table, example.question)
    (gold_row, gold_col), = example.coordinates
    column = int(probabilities.max(axis=0).argmax())
    text = [c for c in example.table.columns if not all(_is_number(v) for v in example.table[c])]
    name = (lambda r: example.table[text[0]].iloc[r]) if text else (lambda r: f"row {r}")
    top = int(probabilities[:, column].argmax())
    return (f"gold column {example.table.columns[gold_col]!r}, selected {example.table.columns[column]!r}; in it the surest "
            f"row is {name(top)} ({probabilities[top, column]:.2f}), the row asked about, {name(gold_row)}, has "
            f"{probabilities[gold_row, column]:.2f}")


DATES_AND_POSITIONS = ("start_page", "end_page", "year", "founded", "first_ascent", "last_eruption", "launched",
                       "planted", "year_established")
"""Numeric headers of the generator that hold a date or a position: their total is meaningless."""


EITHER_WAY_HEADERS = ("bread_price", "clear_nights", "days_to_ship", "floors", "horsepower", "length_km", "length_seconds",
                      "offspring", "price", "price_per_night", "runtime", "salary", "ticket_price", "weight_g",
                      "weight_kg", "years_employed")
"""Numeric headers whose total a reader may or may not ask for (an album's length, a basket's price, a payroll):
the generator decides one way, a sound judgement could go the other, so exercise 3 does not score them."""


def column_operations(draws=30):
    """Every numeric header of every theme the generator has (training, held-out, validation and test themes),
    mapped to the aggregations its column allows (a subset of "sum" and "average"). Headers are collected over
    ``draws`` seeded tables per theme, since a table keeps only some columns."""
    labels = {}
    for _, numeric in _theme_tables({**BROAD_THEMES, **HELD_OUT_THEMES, **VALIDATION_THEMES, **TEST_THEMES}, draws):
        labels.update({header: tuple(column.operations) for header, column in numeric.items()})
    return dict(sorted(labels.items()))


def summable_headers(draws=30):
    """:func:`column_operations` read for sums: every numeric header mapped to whether the generator asks for its
    total (its column lists "sum" among its operations)."""
    return {header: "sum" in operations for header, operations in column_operations(draws).items()}


def senseless_aggregates(examples):
    """The examples that sum or average a column whose own labels say that aggregation means nothing (the total of
    founding years, the mean of start pages), by :func:`column_operations`. Neither generator asks them now; the
    original one, :func:`generate_examples`, did before it read those labels, and still does with ``sensible=False``."""
    import re

    allowed = column_operations()
    found = []
    for e in examples:
        asked = re.fullmatch(r'df\["(\w+)"\]\.(sum|mean)\(\)', e.pandas)
        if asked and {"sum": "sum", "mean": "average"}[asked.group(2)] not in allowed.get(asked.group(1), ("sum", "average")):
            found.append(e)
    return found
