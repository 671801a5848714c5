"""The one markdown-table writer (rcs.utils.tables) and the tables written through it."""

from __future__ import annotations

from rcs.utils.tables import markdown_table, short_number


def test_compact_table_matches_the_hand_written_format():
    text = markdown_table(["mode", "SA (%)"], [["SLF", "81.20"], ["ALF", "-"]])
    assert text == "| mode | SA (%) |\n|---|---|\n| SLF | 81.20 |\n| ALF | - |"


def test_aligned_table_pads_every_column_to_its_widest_cell():
    text = markdown_table(["method", "k"], [["acl", 0.1], ["dynacl", 1.0 / 3]], aligned=True,
                          fmt=short_number)
    assert text.splitlines() == ["| method | k      |",
                                 "|--------|--------|",
                                 "| acl    | 0.1    |",
                                 "| dynacl | 0.3333 |"]


def test_aligned_table_without_rows_is_the_header_and_rule():
    assert markdown_table(["ab", "c"], [], aligned=True) == "| ab | c |\n|----|---|"


def test_print_table_and_sweep_table_use_the_aligned_format(capsys):
    from rcs.cli.common import print_table
    from rcs.launch.collect import _markdown

    rows = [{"run": "a", "loss": 0.123456, "seed": None}]
    assert print_table(rows) == "| run | loss   | seed |\n|-----|--------|------|\n" \
                                "| a   | 0.1235 | None |"
    assert "0.1235" in capsys.readouterr().out
    assert _markdown(rows, ["run", "seed"]) == "| run | seed |\n|-----|------|\n| a   |      |"
    assert _markdown([], ["run"]) == "(no runs found)"


def test_finetune_results_table():
    from rcs.finetune.runner import results_table

    res = {"slf": {"headline": {"SA": 80.0, "RA_pgd20": 40.125}, "settings": {"epochs": 2,
                                                                             "lr": 0.1},
                   "finetune_seconds": 3.04}}
    assert results_table(res).splitlines()[1:] == [
        "|---|---|---|---|---|---|---|---|",
        "| SLF | 2 | 0.1 | 80.00 | 40.12 | - | - | 3.0 |"]
