"""Generated numbers in Markdown: blocks and values filled from committed JSON, and a lint for numbers typed by
hand (STYLE.md §16: documentation shows numbers a command wrote to JSON).

A value, inline (a number inside a sentence or a table cell):

    <!-- generated: value reports/demo/results.json steps.meta_test.result.iteration d -->450<!-- /generated -->

A block, on lines of their own (the lines between are replaced by the rendering):

    <!-- generated: table reports/suite_vsml_mnist/results.json suite -->
    ...
    <!-- /generated -->

Marker arguments: `value FILE PATH [FORMAT] [scale=X]`, `pm FILE PATH [FORMAT]` ("mean ± half-width") and
`table FILE RENDERER [PATH]` (RENDERERS below). FILE is relative to the repository root (the folder holding
pyproject.toml); a `.jsonl` file is the list of its lines' records. PATH: dotted keys, `[i]` list indices,
`["a key"]` for a key holding dots, spaces or brackets (`datasets.mnist.learners["online SGD (lr 0.01)"]`).
FORMAT: a format spec (`.3f`, `,.0f`, `.1%`; default `.3f`) or, holding `{}`, a template (`"{:.2f}×"`); quote
an argument with spaces. `scale=X` multiplies the value first (bytes to MB: `scale=1e-6`).

Markers inside fenced code blocks and inline code spans are text, not markers (this docstring's examples in
a README stay examples). Everything here is pure: `render(text, root)` reads JSON and returns text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsml.report.clone import clone_tables
from vsml.report.grid import grid_table
from vsml.report.introspect import introspection_table
from vsml.report.meta_efficiency import runs_table, variant_table
from vsml.report.meta_test import report_tables
from vsml.report.suite import suite_table

OPEN = re.compile(r"<!--\s*generated:\s*(.*?)\s*-->")
CLOSE = "<!-- /generated -->"
INLINE_KINDS = ("value", "pm")  # rendered between the markers on one line
BLOCK_KINDS = ("table",)  # rendered on the lines between a marker line and a closing line
DEFAULT_FORMAT = ".3f"
# Where a `pm` path ends at a number KEY, the half-width is the first of these siblings that exists.
INTERVAL_KEYS = ("interval", "interval_95", "ci95")

# A table renderer takes the JSON object PATH selects (the whole file without PATH) and returns Markdown.
RENDERERS: dict[str, Callable[[Any], str]] = {
    "meta-test": report_tables,  # a `vsml evaluate` report, e.g. a reproduce step: steps.meta_test.result
    "grid": grid_table,  # a `vsml compare` grid: steps.<compare step>.result
    "introspect": introspection_table,  # a `vsml introspect` report: steps.introspect.result
    "suite": suite_table,  # a `vsml suite` results.json (no PATH)
    "clone": clone_tables,  # a `vsml clone` run's clone.json (no PATH)
    "meta-efficiency-variants": lambda results: variant_table(results["records"]),
    "meta-efficiency-runs": lambda results: runs_table(results["records"]),
}

# The lint: numbers that look like results. Decimals of 3+ digits, percentages, speed ratios ("3.56×",
# "14.7x", not "28x28" or "3 × 3").
RESULT_LIKE = re.compile(
    r"(?<![\w.])\d[\d,]*\.\d{3,}(?![\d.])"
    r"|(?<![\w.])\d[\d,]*(?:\.\d+)?\s?%"
    r"|(?<![\w.])\d[\d,]*(?:\.\d+)?(?:×|x)(?![\w×])"
)
ESCAPE = re.compile(r"<!--\s*not-a-result:\s*(.*?)\s*-->")
# The confidence level of every interval in the reports, a convention rather than a result.
NOT_RESULTS = frozenset({"95%", "95 %"})
FENCE = re.compile(r"^ {0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
ARXIV_ID = re.compile(r"arXiv:?\s*\d{4}\.\d{4,5}")  # a paper's identifier, not a result
COMMENT = re.compile(r"<!--.*?-->")


@dataclass(frozen=True)
class Marker:
    """One generated value or block: what to render, and where its current text sits in the file."""

    kind: str  # "value", "pm" or "table"
    args: tuple[str, ...]  # the marker's arguments after the kind
    line: int  # 1-based line of the opening marker
    start: int  # offset of the current text (the body) in the file's text
    end: int  # offset just past the body


def repository_root(start: Path) -> Path:
    """The folder holding pyproject.toml, from `start` upwards: marker paths are relative to it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ValueError(f"no pyproject.toml in {start} or above: run from inside the repository")


def find_markers(text: str, source: str = "<markdown>") -> list[Marker]:
    """Every marker of `text` outside code, in order; ValueError (naming `source` and the line) for an unknown
    kind, an unclosed or nested marker, a closing marker without an opening one."""
    markers = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    in_fence, index = False, 0
    while index < len(lines):
        line, number = lines[index], index + 1
        if FENCE.match(line):
            in_fence = not in_fence
        if in_fence or FENCE.match(line):
            index += 1
            continue
        masked = _mask_code_spans(line)
        position = 0
        while True:
            opening = OPEN.search(masked, position)
            closing = masked.find(CLOSE, position)
            if closing != -1 and (opening is None or closing < opening.start()):
                raise ValueError(f"{source}:{number}: `{CLOSE}` without an opening `<!-- generated: ... -->`")
            if opening is None:
                break
            kind, args = _parse_arguments(opening.group(1), source, number)
            if kind in INLINE_KINDS:
                closing = masked.find(CLOSE, opening.end())
                nested = OPEN.search(masked, opening.end())
                if closing == -1 or (nested is not None and nested.start() < closing):
                    raise ValueError(
                        f"{source}:{number}: unclosed `{kind}` marker: end it on the same line with `{CLOSE}`"
                    )
                base = offsets[index]
                markers.append(Marker(kind, args, number, base + opening.end(), base + closing))
                position = closing + len(CLOSE)
                continue
            if masked.strip() != opening.group(0):
                raise ValueError(
                    f"{source}:{number}: a `{kind}` marker must be alone on its line (its body is the lines up "
                    f"to `{CLOSE}`)"
                )
            end = index + 1
            while end < len(lines) and lines[end].strip() != CLOSE:
                if OPEN.search(lines[end]):
                    raise ValueError(f"{source}:{end + 1}: marker nested in the `{kind}` block of line {number}")
                end += 1
            if end == len(lines):
                raise ValueError(f"{source}:{number}: unclosed `{kind}` block: add a line `{CLOSE}`")
            markers.append(Marker(kind, args, number, offsets[index + 1], offsets[end]))
            index = end  # the closing line is consumed below
            break
        index += 1
    return markers


def render_marker(marker: Marker, root: Path, source: str = "<markdown>", cache: dict | None = None) -> str:
    """The body `marker` should have, from its JSON file under `root`."""
    where = f"{source}:{marker.line}"
    if len(marker.args) < 2:
        raise ValueError(f"{where}: `{marker.kind}` needs a JSON file and a {_second_argument(marker.kind)}")
    file, rest = marker.args[0], marker.args[1:]
    document = _load(root, file, where, cache if cache is not None else {})
    if marker.kind == "table":
        name, path = rest[0], (rest[1] if len(rest) > 1 else "")
        if name not in RENDERERS:
            raise ValueError(f"{where}: unknown table renderer {name!r}; known: {', '.join(RENDERERS)}")
        if len(rest) > 2:
            raise ValueError(f"{where}: `table {file} {name}` takes one PATH at most, got {' '.join(rest[1:])}")
        selected = resolve(document, path, f"{where}: {file}")
        return "\n" + RENDERERS[name](selected).strip("\n") + "\n\n"
    path, options = rest[0], rest[1:]
    format_, scale = DEFAULT_FORMAT, 1.0
    for option in options:
        if option.startswith("scale="):
            scale = _number_option(option, where)
        else:
            format_ = option
    value = resolve(document, path, f"{where}: {file}")
    if marker.kind == "value":
        return _format(value, scale, format_, where)
    mean, half_width = _mean_and_interval(document, path, value, f"{where}: {file}")
    return f"{_format(mean, scale, format_, where)} ± {_format(half_width, scale, format_, where)}"


def render(text: str, root: Path, source: str = "<markdown>") -> str:
    """`text` with every marker's body replaced by its rendering from the JSON files under `root`."""
    cache: dict = {}
    pieces, position = [], 0
    for marker in find_markers(text, source):
        pieces += [text[position : marker.start], render_marker(marker, root, source, cache)]
        position = marker.end
    return "".join(pieces) + text[position:]


def stale_markers(text: str, root: Path, source: str = "<markdown>") -> list[Marker]:
    """The markers whose body differs from their rendering (what `vsml docs` would rewrite)."""
    cache: dict = {}
    return [
        marker
        for marker in find_markers(text, source)
        if text[marker.start : marker.end] != render_marker(marker, root, source, cache)
    ]


def resolve(document: Any, path: str, where: str = "JSON") -> Any:
    """The value at `path` (dotted keys, `[i]`, `["key"]`) in `document`; "" is the document itself.
    ValueError naming the step that failed and the keys available there."""
    return _resolve_steps(document, list(_path_steps(path, where)), where)


def _resolve_steps(document: Any, steps: list[str | int], where: str) -> Any:
    value, walked = document, ""
    for key in steps:
        if isinstance(value, list):
            if not isinstance(key, int) and not (isinstance(key, str) and key.lstrip("-").isdigit()):
                raise ValueError(f"{where}: {walked or 'the top'} is a list: index it as [i], not {key!r}")
            if not -len(value) <= int(key) < len(value):
                raise ValueError(f"{where}: index {key} out of range at {walked or 'the top'} (length {len(value)})")
            value, walked = value[int(key)], f"{walked}[{key}]"
        elif isinstance(value, Mapping):
            if isinstance(key, int) or key not in value:
                shown = ", ".join(map(repr, list(value)[:20])) + (", ..." if len(value) > 20 else "")
                raise ValueError(f"{where}: no key {key!r} at {walked or 'the top'}; keys there: {shown}")
            value, walked = value[key], f"{walked}.{key}" if walked else str(key)
        else:
            raise ValueError(f"{where}: {walked or 'the top'} is {value!r}, not an object: it has no {key!r}")
    return value


def result_like_numbers(text: str, source: str = "<markdown>") -> list[tuple[str, int, str]]:
    """(source, line, number) for every result-like number outside generated markers, code, link targets and
    comments. Escape a number that is not a result on its line: `<!-- not-a-result: 36× 0.0067 -->`; an
    escape naming a number its line does not hold is reported too (so escapes do not outlive their number)."""
    kept = list(text)
    for marker in find_markers(text, source):
        # Blank the body but keep its newlines, so line numbers stay those of the file.
        kept[marker.start : marker.end] = [c if c == "\n" else " " for c in kept[marker.start : marker.end]]
    found = []
    in_fence = False
    for number, line in enumerate("".join(kept).splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        masked = _mask_code_spans(line)  # an escape or a number shown as code is an example
        allowed = [token for escape in ESCAPE.findall(masked) for token in escape.split()]
        visible = ARXIV_ID.sub(" ", LINK_TARGET.sub("]", COMMENT.sub(" ", masked)))
        matches = [match.group(0) for match in RESULT_LIKE.finditer(visible)]
        found += [(source, number, m) for m in matches if m not in allowed and m not in NOT_RESULTS]
        unused = [token for token in allowed if token not in matches]
        found += [(source, number, f"{token} (escaped, but not on the line)") for token in unused]
    return found


def _parse_arguments(inside: str, source: str, line: int) -> tuple[str, tuple[str, ...]]:
    tokens = re.findall(r'(?:"[^"]*"|[^\s"])+', inside)
    if not tokens or tokens[0] not in INLINE_KINDS + BLOCK_KINDS:
        got = tokens[0] if tokens else "nothing"
        raise ValueError(
            f"{source}:{line}: unknown marker kind {got!r}: write `generated: value|pm|table FILE ...`"
        )
    args = tuple(t[1:-1] if len(t) > 1 and t[0] == t[-1] == '"' else t for t in tokens[1:])
    return tokens[0], args


def _second_argument(kind: str) -> str:
    return "renderer" if kind in BLOCK_KINDS else "path in it"


def _path_steps(path: str, where: str) -> Iterator[str | int]:
    step = re.compile(r'\.?([^.\[\]"\s]+)|\[(-?\d+)\]|\["([^"]*)"\]')
    position = 0
    while position < len(path):
        match = step.match(path, position)
        if match is None or (position == 0 and path.startswith(".")):
            raise ValueError(
                f'{where}: cannot read path {path!r} from character {position}: write keys.dotted, [0], ["a key"]'
            )
        name, index, quoted = match.groups()
        yield int(index) if index is not None else (quoted if quoted is not None else name)
        position = match.end()


def _load(root: Path, file: str, where: str, cache: dict) -> Any:
    if file not in cache:
        path = root / file
        if not path.is_file():
            raise ValueError(f"{where}: no file {file} under {root}: paths are relative to the repository root")
        try:
            if path.suffix == ".jsonl":
                cache[file] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            else:
                cache[file] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: {file} is not valid JSON: {error}") from error
    return cache[file]


def _number_option(option: str, where: str) -> float:
    try:
        return float(option.partition("=")[2])
    except ValueError as error:
        raise ValueError(f"{where}: {option!r} is not scale=<number>") from error


def _format(value: Any, scale: float, format_: str, where: str) -> str:
    if scale != 1.0:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}: scale= needs a number, the path holds {value!r}")
        value = value * scale
    try:
        return format_.format(value) if "{" in format_ else format(value, format_)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise ValueError(f"{where}: cannot format {value!r} with {format_!r}: {error}") from error


def _mean_and_interval(document: Any, path: str, value: Any, where: str) -> tuple[Any, Any]:
    """`pm`'s two numbers: a dict's `mean` and interval key, or a number KEY and its sibling KEY_interval_95
    (also with a `_mean` suffix dropped: `mean_accuracy_mean` -> `mean_accuracy_interval_95`)."""
    if isinstance(value, Mapping):
        interval = next((k for k in INTERVAL_KEYS if k in value), None)
        if "mean" not in value or interval is None:
            raise ValueError(f"{where}: {path} needs keys 'mean' and one of {INTERVAL_KEYS}; has {list(value)}")
        return value["mean"], value[interval]
    steps = list(_path_steps(path, where))
    key, parent = steps[-1], _resolve_steps(document, steps[:-1], where)
    if not isinstance(key, str) or not isinstance(parent, Mapping):
        raise ValueError(f"{where}: `pm` needs a dict with 'mean' or a key with a sibling KEY_interval_95")
    candidates = [f"{key}_{suffix}" for suffix in INTERVAL_KEYS] + [f"{key.removesuffix('_mean')}_interval_95"]
    sibling = next((c for c in candidates if c in parent), None)
    if sibling is None:
        raise ValueError(f"{where}: no half-width beside {path}: looked for {', '.join(candidates)}")
    return value, parent[sibling]


def _mask_code_spans(line: str) -> str:
    # Same length, so offsets into the masked line are offsets into the line.
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
