from __future__ import annotations

import pytest
from loraland.storage import Scheme, StorageError, parse_uri


@pytest.mark.parametrize(
    ("raw", "scheme", "location", "path", "revision"),
    [
        ("builtin://smollm2-135m-instruct", Scheme.BUILTIN, "smollm2-135m-instruct", "", None),
        ("/models/base", Scheme.FILE, "/models/base", "", None),
        ("./adapters/a", Scheme.FILE, "./adapters/a", "", None),
        ("file:///models/base", Scheme.FILE, "/models/base", "", None),
        ("pvc://models/llama/7b", Scheme.PVC, "models", "llama/7b", None),
        ("pvc://models", Scheme.PVC, "models", "", None),
        ("pvc://models/a//b/./c/", Scheme.PVC, "models", "a/b/c", None),
        ("hf://HuggingFaceTB/SmolLM2-135M", Scheme.HF, "HuggingFaceTB/SmolLM2-135M", "", None),
        ("hf://org/name@v1.0", Scheme.HF, "org/name", "", "v1.0"),
        ("s3://my-bucket/adapters/sst2", Scheme.S3, "my-bucket", "adapters/sst2", None),
        ("  s3://my-bucket  ", Scheme.S3, "my-bucket", "", None),
    ],
)
def test_parse_accepts(
    raw: str, scheme: Scheme, location: str, path: str, revision: str | None
) -> None:
    parsed = parse_uri(raw)
    assert (parsed.scheme, parsed.location, parsed.path, parsed.revision) == (
        scheme,
        location,
        path,
        revision,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty URI"),
        ("ftp://host/x", "unknown scheme 'ftp://'"),
        ("file://relative/path", "absolute path"),
        ("builtin://", "takes a model name"),
        ("builtin://a/b", "takes a model name"),
        ("hf://just-a-name", "<org>/<name>"),
        ("hf://org/name@", "empty revision"),
        ("pvc://Bad_Claim/x", "not a valid PersistentVolumeClaim name"),
        ("pvc://claim/../etc", "must not contain '..'"),
        ("s3://B/x", "not a valid S3 bucket name"),
        ("s3://bucket/a/../../x", "must not contain '..'"),
    ],
)
def test_parse_rejects_with_reason(raw: str, message: str) -> None:
    with pytest.raises(StorageError) as info:
        parse_uri(raw)
    assert message in str(info.value)


def test_error_names_the_uri_and_the_fix() -> None:
    with pytest.raises(StorageError) as info:
        parse_uri("gs://bucket/x")
    text = str(info.value)
    assert text.startswith("gs://bucket/x: ")
    assert "supported: builtin://" in text
