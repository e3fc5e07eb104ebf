from __future__ import annotations

import os

import pyarrow as pa
import pytest

from partfer.data_prep.prep_store import (
    PREP_VERSION, PreparedBuilder, check_name, content_hash, hash_inputs, prepared_path, read_rejects_csv,
)
from partfer.data_prep.fingerprint import input_fingerprint
from partfer.data_prep.readers import Reject
from partfer.data_prep.schema import SCHEMA, SUCCESS_MARKER
from partfer.data_prep.settings import PrepSettings


def _inputs(root, settings=PrepSettings(), options=None, layout="jaffe"):
    return hash_inputs("set", layout, options or {}, settings.to_dict(), input_fingerprint(root))


def test_hash_is_stable_and_changes_with_every_input(tmp_path):
    (tmp_path / "a.png").write_bytes(b"1234")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("x")
    base = content_hash(_inputs(tmp_path))
    assert base == content_hash(_inputs(tmp_path)) and len(base) == 12
    assert _inputs(tmp_path)["prep_version"] == PREP_VERSION
    assert content_hash(_inputs(tmp_path, PrepSettings(crop_size=96))) != base
    assert content_hash(_inputs(tmp_path, options={"subject_regex": "(x)"})) != base
    assert content_hash(_inputs(tmp_path, layout="folder")) != base
    stat = (tmp_path / "a.png").stat()
    os.utime(tmp_path / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # touched: same key
    assert content_hash(_inputs(tmp_path)) == base
    (tmp_path / "a.png").write_bytes(b"1235")                                        # same size, new bytes
    edited = content_hash(_inputs(tmp_path))
    assert edited != base
    (tmp_path / "c.png").write_bytes(b"")                                            # added
    assert content_hash(_inputs(tmp_path)) not in (base, edited)


def test_builder_publishes_atomically_or_leaves_nothing(tmp_path):
    final = prepared_path(tmp_path, "set", "0123456789ab")
    builder = PreparedBuilder(final)
    row = {name: None for name in SCHEMA.names}
    row.update(sample_id="a.png", source_path="a.png", dataset="set", split="all", subject="s", group="s",
               label="happiness", image=bytes(4), height=2, width=2, landmarks=[0.5] * 136,
               face_box=[0.0, 0.0, 2.0, 2.0], detector="none", detector_score=1.0, annotator="dataset")
    builder.add_rows(pa.Table.from_pylist([row], schema=SCHEMA), [0])
    builder.add_rejects([Reject("b.png", "no face found by ssd")])
    assert not final.exists() and builder.tmp.is_dir() and ".tmp-" in builder.tmp.name
    manifest = builder.publish({"name": "set"})
    assert not builder.tmp.exists() and (final / SUCCESS_MARKER).is_file()
    assert (manifest["n_ok"], manifest["n_rejected"], manifest["classes"]) == (1, 1, ["happiness"])
    assert read_rejects_csv(final / "rejects.csv") == [Reject("b.png", "no face found by ssd")]

    abandoned = PreparedBuilder(prepared_path(tmp_path, "other", "ba9876543210"))
    abandoned.discard()
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [final.name]


def test_names_must_be_safe_folder_names():
    assert check_name("CK+48") == "CK+48" and check_name("sfew_2.0") == "sfew_2.0"
    for bad in ("", "../x", "a/b", ".hidden", "with space"):
        with pytest.raises(ValueError, match="names a folder"):
            check_name(bad)
