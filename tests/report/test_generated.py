"""Generated numbers in Markdown (`vsml.report.generated`, `vsml docs`): markers, rendering, errors, the lint; and
the repository's own documentation: every marker up to date with its JSON, no hand-typed result in the files
converted so far."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsml.cli.docs import default_files
from vsml.cli.main import main
from vsml.report.generated import (
    CLOSE,
    find_markers,
    render,
    repository_root,
    resolve,
    result_like_numbers,
    stale_markers,
)

ROOT = repository_root(Path(__file__))

# Files the lint must pass on: no result-like number outside a marker or an explicit escape.
CONVERTED = [
    "README.md",
    "reports/README.md",
    "docs/pretrained.md",
    "docs/speed.md",
    "docs/vsml.md",
    "docs/architecture.md",
    "docs/baselines.md",
    "docs/blur.md",
    "docs/cloning.md",
    "docs/experiments.md",
    "docs/index.md",
    "reports/fig8_cpu_small/README.md",
    "reports/invariances_cpu_small/README.md",
    "reports/speed_cpu/README.md",
    "docs/distributed.md",
    "reports/cloning_cpu_small/README.md",
]
# Not linted, with the reason. Whole files a command writes are generated already; the others hold numbers that
# no committed JSON has (the runs' outputs were not kept).
NOT_LINTED = {
    "reports/blur_mnist/README.md": "written by `vsml reproduce blur_mnist`",
    "reports/blur_toy2d/README.md": "written by `vsml reproduce blur_toy2d`",
    "reports/demo/README.md": "written by `vsml reproduce demo`",
    "reports/fig6/README.md": "written by `vsml reproduce fig6`",
    "reports/omniglot/README.md": "written by `vsml reproduce omniglot`",
    "reports/meta_efficiency/README.md": "written by `vsml reproduce meta_efficiency`",
    "reports/suite_vsml_mnist/README.md": "written by `vsml suite`",
    "reports/vsml_general/README.md": "written by `vsml reproduce vsml_general`",
    "reports/cloning/README.md": "written by `vsml reproduce cloning`",
}


@pytest.fixture
def root(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(json.dumps({
        "a": {"b": [0.12345, {"c d": 7}], "x.y": 2.5},
        "acc": {"mean": 0.7123, "interval": 0.0149},
        "seeds": {"mean_accuracy_mean": 0.5, "mean_accuracy_interval_95": 0.02},
        "window": 100,
        "records": [{"variant": "v", "seed": 0, "escaped": True, "iterations": 10, "wall_seconds": 60.0,
                     "cpu_seconds": 120.0, "held_out_accuracy": 0.25, "budget_seconds": 600.0}],
    }))  # fmt: skip
    (tmp_path / "r" / "log.jsonl").write_text('{"t": 1.5}\n{"t": 3.25}\n')
    return tmp_path


def value(args: str, body: str = "?") -> str:
    return f"<!-- generated: value {args} -->{body}<!-- /generated -->"


@pytest.mark.parametrize(
    "args, expected",
    [
        ("r/results.json a.b[0]", "0.123"),  # the default format, .3f
        ("r/results.json a.b[0] .2%", "12.35%"),
        ('r/results.json a.b[1]["c d"] d', "7"),
        ('r/results.json a["x.y"] "{:.1f}×"', "2.5×"),
        ("r/results.json a.b[-2] scale=1000 ,.0f", "123"),
        ("r/log.jsonl [1].t .2f", "3.25"),
    ],
)
def test_a_value_is_its_json_number_formatted(root, args, expected):
    assert render(f"x {value(args)} y\n", root) == f"x {value(args, expected)} y\n"


def test_pm_is_mean_and_half_width(root):
    dict_form = "<!-- generated: pm r/results.json acc -->?<!-- /generated -->"
    sibling_form = '<!-- generated: pm r/results.json seeds.mean_accuracy_mean ".2f" -->?<!-- /generated -->'
    text = render(f"{dict_form}, {sibling_form}\n", root)
    assert "-->0.712 ± 0.015<!--" in text and "-->0.50 ± 0.02<!--" in text


def test_a_table_block_replaces_the_lines_between_its_markers(root):
    text = "# t\n<!-- generated: table r/results.json meta-efficiency-runs -->\nold\nlines\n<!-- /generated -->\nend\n"
    out = render(text, root)
    lines = out.splitlines()
    assert lines[0] == "# t" and lines[-1] == "end" and "old" not in out
    assert lines[3].startswith("| variant") and lines[-2] == "<!-- /generated -->"


def test_a_clone_block_is_the_runs_tables_without_their_heading(root):
    result = {"dataset": "mnist", "architecture": "784-10", "steps": 100, "tail": 10, "same_online_prediction": 0.5,
              "clone": {"test_accuracy": 0.25, "online_accuracy_tail": 0.2},
              "teacher": {"test_accuracy": 0.9, "online_accuracy_tail": 0.8}}  # fmt: skip
    config = {"init": "random", "teacher": {"learning_rate": 0.3}, "train": {"steps": 5},
              "eval": {"weight_std": 1.0, "seed": 0}}  # fmt: skip
    history = {"heldout_before": {"forward": 0.1}, "heldout_after": {"forward": 0.001}}
    summary = {"history": history, "results": [result], "config": config}
    (root / "r" / "clone.json").write_text(json.dumps(summary))
    out = render("<!-- generated: table r/clone.json clone -->\n<!-- /generated -->\n", root)
    assert "| mnist" in out and "0.250" in out and "| forward" in out and "# Learning" not in out


def test_rendering_a_rendered_file_changes_nothing(root):
    text = f"a {value('r/results.json a.b[0]')}\n\n<!-- generated: table r/results.json meta-efficiency-runs -->\n"
    text += "<!-- /generated -->\n"
    once = render(text, root)
    assert render(once, root) == once and stale_markers(once, root) == []
    assert [m.line for m in stale_markers(text, root)] == [1, 3]


def test_markers_in_code_are_text(root):
    text = f"```\n{value('nowhere.json k')}\n```\n`{value('nowhere.json k')}`\n"
    assert find_markers(text) == [] and render(text, root) == text


@pytest.mark.parametrize(
    "text, message",
    [
        (value("r/missing.json a"), "doc.md:1: no file r/missing.json"),
        (value("r/results.json a.nope"), "no key 'nope' at a; keys there: 'b', 'x.y'"),
        (value("r/results.json a.b[5]"), "index 5 out of range at a.b"),
        (value("r/results.json a.b.c"), "a.b is a list"),
        (value("r/results.json a.b[0].c"), "is 0.12345, not an object"),
        (value("r/results.json a..b"), "cannot read path"),
        (value("r/results.json window s"), "cannot format 100 with 's'"),
        (value("r/results.json"), "needs a JSON file and a path"),
        ("<!-- generated: pm r/results.json window -->?<!-- /generated -->", "no half-width beside window"),
        ("x\n<!-- generated: table r/results.json nope -->\n<!-- /generated -->", "doc.md:2: unknown table renderer"),
        ("<!-- generated: chart r/results.json -->", "doc.md:1: unknown marker kind 'chart'"),
        ("<!-- generated: value r/results.json window -->1", "doc.md:1: unclosed `value` marker"),
        ("<!-- generated: table r/results.json suite -->\n| a |\n", "doc.md:1: unclosed `table` block"),
        (
            f"<!-- generated: table r/results.json suite -->\n{value('r/results.json window')}\n{CLOSE}",
            "doc.md:2: marker nested in the `table` block of line 1",
        ),
        ("x <!-- generated: table r/results.json suite -->\n<!-- /generated -->", "must be alone on its line"),
        ("a\n<!-- /generated -->\n", "doc.md:2: `<!-- /generated -->` without an opening"),
    ],
)
def test_errors_name_the_file_line_and_what_is_wrong(root, text, message):
    with pytest.raises(ValueError, match="doc.md:") as error:
        render(text, root, "doc.md")
    assert message in str(error.value)


def test_resolve_of_an_empty_path_is_the_document():
    assert resolve({"a": 1}, "") == {"a": 1} and resolve([{"a": [3]}], "[0].a[0]") == 3


def test_the_lint_finds_results_outside_markers_and_code(root):
    text = "\n".join([
        "accuracy 0.712 and 87 % and 14.7x, 3.56× faster",  # four results
        f"in a marker {value('r/results.json a.b[0]', '0.123')} is fine",
        "`0.712` in code, [link](https://x.org/v0.7123), 28x28, 3 × 3, 8×8, 95% interval, 0.12, v0.10.2",
        "```", "0.9999 in a fence", "```",
        "a constant 0.0067 <!-- not-a-result: 0.0067 --> but 0.993",
        "<!-- not-a-result: 0.5555 -->",
    ])  # fmt: skip
    found = [(line, number) for _, line, number in result_like_numbers(text, "doc.md")]
    assert found == [
        (1, "0.712"), (1, "87 %"), (1, "14.7x"), (1, "3.56×"), (7, "0.993"),
        (8, "0.5555 (escaped, but not on the line)"),
    ]  # fmt: skip


def test_vsml_docs_check_lists_stale_markers_then_rewrites_them(root, monkeypatch, capsys):
    page = root / "page.md"
    page.write_text(f"{value('r/results.json a.b[0]')}\n")
    monkeypatch.chdir(root)
    assert main(["docs", "--check", "page.md"]) == 1
    assert "page.md:1: value r/results.json a.b[0]" in capsys.readouterr().out and "?" in page.read_text()
    assert main(["docs", "page.md"]) == 0 and "0.123" in page.read_text()
    assert main(["docs", "--check", "page.md"]) == 0


def test_vsml_docs_names_a_missing_file(root, monkeypatch, capsys):
    monkeypatch.chdir(root)
    assert main(["docs", "nope.md"]) == 2 and "no Markdown file nope.md" in capsys.readouterr().err


# The repository's own documentation.


@pytest.mark.parametrize("path", [str(p.relative_to(ROOT)) for p in default_files(ROOT)])
def test_every_generated_marker_is_up_to_date(path):
    stale = stale_markers((ROOT / path).read_text(), ROOT, path)
    assert not stale, f"stale markers at lines {[m.line for m in stale]}: run `vsml docs {path}`"


@pytest.mark.parametrize("path", CONVERTED)
def test_converted_files_show_no_hand_typed_result(path):
    found = result_like_numbers((ROOT / path).read_text(), path)
    assert not found, "generate these (or escape a non-result with <!-- not-a-result: N -->): " + ", ".join(
        f"{line}: {number}" for _, line, number in found
    )


def test_every_default_file_is_linted_or_excluded_with_a_reason():
    files = {str(p.relative_to(ROOT)) for p in default_files(ROOT)}
    unaccounted = files - set(CONVERTED) - set(NOT_LINTED)
    assert not unaccounted, f"add these to CONVERTED or NOT_LINTED (with the reason): {sorted(unaccounted)}"
