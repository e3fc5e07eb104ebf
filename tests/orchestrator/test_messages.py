from partfer.orchestrator.messages import SHOWN_MAX, shown


def test_a_short_value_is_shown_whole_as_its_repr():
    assert shown("last") == "'last'"
    assert shown([1, 2]) == "[1, 2]"
    assert shown("x" * (SHOWN_MAX - 2)) == repr("x" * (SHOWN_MAX - 2))


def test_a_long_value_keeps_both_ends_and_says_how_much_is_left_between():
    value = "A" + "x" * 1000 + "Z"
    text = shown(value)
    assert text.startswith("'Axxx") and text.endswith("xxxZ'") and len(text) < SHOWN_MAX + 40
    assert f"[... {len(repr(value)) - SHOWN_MAX:,} characters left out ...]" in text
    assert shown(list(range(10_000))).startswith("[0, 1, 2, ") and shown(list(range(10_000))).endswith("9998, 9999]")
