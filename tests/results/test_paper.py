"""The paper's numbers: internal consistency checks the paper itself states in its text."""
import pytest

from partfer.results import paper


def test_table1_columns_and_datasets():
    assert paper.COLUMNS == ("Baseline", "FTL", "Eyebrows", "Eyes", "Nose", "Mouth", "Jaw", "EL")
    assert set(paper.TABLE1) == {"ckplus", "jaffe", "sfew"}
    assert paper.TABLE1["ckplus"]["EL"] == 97.31
    assert paper.TABLE1["jaffe"]["Nose"] == 82.88
    assert paper.TABLE1["sfew"]["Baseline"] == 36.47


@pytest.mark.parametrize("dataset, margin", [("ckplus", 0.51), ("jaffe", 5.34), ("sfew", -3.69)])
def test_el_against_benchmark_matches_the_papers_text(dataset, margin):
    # Section V: EL "outperform[s] the benchmark for CK+ by 0.51%, and Jaffe by 5.34%" and
    # "falls short of the benchmark for SFEW by 3.69%": Table I and Table II must agree.
    assert paper.TABLE1[dataset]["EL"] - paper.TABLE2[dataset].accuracy == pytest.approx(margin)


def test_table3_first_row_is_table1_sfew_and_cross_rows_exist():
    assert paper.TABLE3[("sfew", "sfew")] == paper.TABLE1["sfew"]
    assert paper.TABLE3[("sfew", "ckplus")]["EL"] == 47.53
    assert paper.TABLE3[("sfew", "jaffe")]["EL"] == 30.51
    # The paper's claim: EL on CK+ beats EL on its own SFEW validation set.
    assert paper.TABLE3[("sfew", "ckplus")]["EL"] > paper.TABLE3[("sfew", "sfew")]["EL"]


def test_column_and_display_names():
    assert paper.column_name("el", None) == "EL"
    assert paper.column_name("el", "mouth") == "Mouth"
    assert paper.column_name("ftl", "m3") == "FTL m3"
    assert paper.display_name("ckplus") == "CK+"
    assert paper.display_name("fer2013") == "fer2013"
    assert [paper.column_name("el", p) for p in paper.PART_ORDER] == list(paper.COLUMNS[2:7])
