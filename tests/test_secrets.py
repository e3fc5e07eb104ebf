"""A storage URI that carries credentials (`s3://KEY:SECRET@bucket`, `?secret_key=...`) is refused
before anything prints it, names a folder after it or writes it into a run's files; credentials
come from each cloud's standard environment variables and files."""
from __future__ import annotations

from pathlib import Path

import pytest

from partfer.orchestrator.storage import remote
from partfer.cli import main

SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
KEY = "AKIAIOSFODNN7EXAMPLE"
TINY = Path(__file__).resolve().parent / "configs" / "tiny.yaml"


def _everything_under(folder: Path) -> str:
    """Every path name and every file's bytes under `folder`, as one text."""
    parts = []
    for path in folder.rglob("*"):
        parts.append(str(path))
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(remote.TIMEOUT_ENV, "5")          # a store that was not refused fails fast
    monkeypatch.delenv("PARTFER_DEBUG", raising=False)
    return tmp_path


def _assert_refused(argv: list[str], capsys, where: Path) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert SECRET not in out + err and KEY not in out + err
    assert err.startswith("partfer: error:") and len(err.strip().splitlines()) == 1, err
    assert "credentials in a URI are refused" in err and "AWS_SECRET_ACCESS_KEY" in err
    assert SECRET not in _everything_under(where)
    return err


@pytest.mark.parametrize("uri", [
    f"s3://{KEY}:{SECRET}@bucket/prefix",
    f"gs://{SECRET}@bucket/prefix",
    f"s3://bucket/prefix?region=us-east-1&access_key={KEY}&secret_key={SECRET}",
])
def test_run_refuses_a_storage_uri_with_credentials(isolated, capsys, uri):
    err = _assert_refused(["run", "--config", str(TINY), "--executor", "inline", "--out", uri], capsys, isolated)
    assert "bucket/prefix" in err                       # the URI is still named, without them


def test_a_config_files_storage_with_credentials_is_refused_before_anything_is_written(isolated, capsys):
    config = isolated / "mine.yaml"
    (isolated / "tiny.yaml").write_bytes(TINY.read_bytes())     # an include names a file beside the config
    config.write_text(f"include: tiny.yaml\nstorage: s3://{KEY}:{SECRET}@bucket/prefix\n")
    code = main(["run", "--config", str(config), "--executor", "inline"])
    out, err = capsys.readouterr()
    assert code == 2 and SECRET not in out + err, err
    assert "credentials in a URI are refused" in err
    config.unlink()                                      # the user's own files: nothing else holds it
    (isolated / "tiny.yaml").unlink()
    assert SECRET not in _everything_under(isolated)
    assert not (isolated / "runs").exists()


@pytest.mark.parametrize("argv", [
    ["run", "--config", str(TINY), "--prepared", f"jaffe=s3://{KEY}:{SECRET}@bucket/prepared/jaffe-1"],
    ["report", f"s3://{KEY}:{SECRET}@bucket/runs/r1"],
    ["export", f"s3://{KEY}:{SECRET}@bucket/runs/r1", "--dataset", "jaffe", "--network", "el", "--out", "m"],
])
def test_every_command_refuses_credentials_in_a_uri(isolated, capsys, argv):
    _assert_refused(argv, capsys, isolated)


def test_storage_functions_refuse_credentials_and_messages_are_redacted():
    uri = f"s3://{KEY}:{SECRET}@bucket/p"
    for use in (remote.cache_path, lambda u: remote.join(u, "x"), remote.resolve, remote.check):
        with pytest.raises(remote.StorageError, match="storage s3://bucket/p: credentials in a URI are refused") as err:
            use(uri)
        assert SECRET not in str(err.value) and KEY not in str(err.value)
    assert remote.redact(f"at {uri} and s3://u@b") == "at s3://***@bucket/p and s3://***@b"
    remote.refuse_credentials("s3://bucket/p?region=eu-west-1")     # a plain option is fine


# AWS secret keys hold '/' and '+'; base64 tokens end in '='; a careful user percent-encodes them
SLASHED = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY="
ENCODED = "wJalrXUtnFEMI%2FK7MDENG%2BbPxRfiCY%3D"


def _secret_free(text: str) -> bool:
    return all(piece not in text for piece in (SLASHED, ENCODED, "K7MDENG", KEY))


def test_secrets_with_slash_plus_equals_or_percent_encoding_are_refused_and_never_printed(isolated, capsys):
    uris = [f"s3://{KEY}:{SLASHED}@bucket/prefix", f"s3://{KEY}:{ENCODED}@bucket/prefix",
            f"s3://{KEY}:1234/{SLASHED}@bucket/prefix", f"gs://{KEY}:{SLASHED}@bucket/prefix",
            f"s3://bucket/prefix?secret_key={ENCODED}&region=eu-west-1"]
    for uri in uris:
        code = main(["run", "--config", str(TINY), "--executor", "inline", "--out", uri])
        out, err = capsys.readouterr()
        assert code == 2 and _secret_free(out + err) and "1234" not in err, (uri, err)
        assert err.startswith("partfer: error: storage ") and len(err.strip().splitlines()) == 1, err
        assert "credentials in a URI are refused" in err and "bucket/prefix" in err, err
    assert _secret_free(_everything_under(isolated))


@pytest.mark.parametrize("key", ["client_secret", "sig", "X-Amz-Signature", "X-Amz-Credential", "password",
                                 "session_token", "Client%5FSecret"])
def test_credential_query_keys_are_refused_and_their_values_redacted(key):
    uri = f"abfs://container@account.dfs.core.windows.net/runs?{key}={ENCODED}&tenant_id=t1"
    with pytest.raises(remote.StorageError, match="credentials in a URI are refused") as err:
        remote.refuse_credentials(uri)
    message = str(err.value)
    assert _secret_free(message) and f"{key}=***" in message and "tenant_id=t1" in message, message
    assert "abfs://container@account.dfs.core.windows.net/runs" in message     # the container stays


def test_an_azure_container_in_the_user_info_is_no_credential():
    uri = "abfs://container@account.dfs.core.windows.net/partfer?tenant_id=t1"
    remote.refuse_credentials(uri)
    assert remote.join(uri, "runs") == "abfs://container@account.dfs.core.windows.net/partfer/runs?tenant_id=t1"
    assert remote.redact(f"at {uri}") == f"at {uri}"
    with pytest.raises(remote.StorageError, match=r"storage abfss://container:\*\*\*@account"):
        remote.refuse_credentials(f"abfss://container:{SLASHED}@account.dfs.core.windows.net/p")   # an account key


def test_messages_redact_every_credential_of_every_uri_in_them():
    text = (f"cannot open s3://{KEY}:{SLASHED}@bucket/p (from gs://bucket/q?access_token={ENCODED}), "
            f"nor 'abfs://c:{SLASHED}@a.dfs.core.windows.net/x?sig={SLASHED}&sv=2020'")
    shown = remote.redact(text)
    assert _secret_free(shown), shown
    assert shown == ("cannot open s3://***@bucket/p (from gs://bucket/q?access_token=***), "
                     "nor 'abfs://c:***@a.dfs.core.windows.net/x?sig=***&sv=2020'")
