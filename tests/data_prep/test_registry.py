"""data_prep.registry: entries by name, an unknown name's error listing the known ones, and the
four registries filled by importing their packages."""
import pytest

from partfer.data_prep.errors import UnknownNameError
from partfer.data_prep.registry import Registry


def test_lookup_by_name_and_the_error_lists_the_known_names():
    things = Registry("widget", known="known widgets")
    things.add("b", 2)
    things.decorator("a")(1)
    assert things.get("a") == 1 and things.names() == ["a", "b"] and list(things.items()) == [("a", 1), ("b", 2)]
    assert "a" in things and "c" not in things
    with pytest.raises(UnknownNameError, match=r"^unknown widget 'c'; known widgets: a, b$"):
        things.get("c")


def test_a_unique_registry_refuses_a_second_entry_under_one_name():
    things = Registry("widget", unique=True)
    entry = object()
    things.add("a", entry)
    things.add("a", entry)                      # the same entry again (a module imported twice) is fine
    with pytest.raises(ValueError, match="widget 'a' registered twice"):
        things.add("a", object())
    loose = Registry("widget")
    loose.add("a", 1)
    loose.add("a", 2)
    assert loose.get("a") == 2


def test_importing_a_package_registers_its_built_in_entries():
    from partfer.data_prep.annotators import list_annotators
    from partfer.data_prep.detectors import get_detector_spec, list_detectors
    from partfer.data_prep.image_members import MEMBER_LOADERS
    from partfer.data_prep.readers import get_reader, known_layouts
    import partfer.data_prep.image_io  # noqa: F401  (registers the .csv loader)
    assert known_layouts() == ["ckplus", "fer2013", "folder", "jaffe", "sfew"]
    assert list(list_detectors()) == ["hog", "none", "ssd"]
    assert list(list_annotators()) == ["dataset", "dlib", "fan"]
    assert MEMBER_LOADERS.names() == [".csv"]
    with pytest.raises(UnknownNameError, match=r"unknown data set layout 'x'; known layouts: ckplus, fer2013"):
        get_reader("x")
    with pytest.raises(UnknownNameError, match=r"unknown face detector 'mtcnn'; known: hog, none, ssd"):
        get_detector_spec("mtcnn")
