"""Ingest reading its corpus from S3 (moto's server over HTTP) gives the same artifact as from a folder."""

from pathlib import Path

import boto3

from steps.common.contract import RuntimeContext
from steps.common.residency import ResidencyPolicy
from steps.common.storage import S3Settings, StorageSettings
from steps.ingest import IngestInputs, run

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "corpus" / "demo"
FILES = {"handbook/welcome.md": "01-welcome.md", "handbook/de/reisekosten.txt": "reisekostenrichtlinie.txt",
         "faq.jsonl": "faq.jsonl"}


def _context(tmp_path: Path, root: str, endpoint: str) -> RuntimeContext:
    s3 = S3Settings(endpoint_url=endpoint, region="eu-central-1", addressing_style="path")
    return RuntimeContext(run_id="s3", storage=StorageSettings(artifact_root=root, s3=s3),
                          residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "scratch"))


def test_s3_corpus_matches_folder_corpus(moto_server: str, s3_bucket: str, tmp_path: Path,
                                         embedded_model_dir: Path) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    folder = tmp_path / "corpus"
    for key, name in FILES.items():
        client.put_object(Bucket=s3_bucket, Key=f"raw/{key}", Body=(DEMO / name).read_bytes())
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes((DEMO / name).read_bytes())

    from_s3 = run(IngestInputs(context=_context(tmp_path, f"s3://{s3_bucket}/artifacts", moto_server),
                               corpus_uri=f"s3://{s3_bucket}/raw", tokenizer_model=str(embedded_model_dir)))
    from_folder = run(IngestInputs(context=_context(tmp_path, (tmp_path / "out").as_uri(), moto_server),
                                   corpus_uri=folder.as_uri(), tokenizer_model=str(embedded_model_dir)))

    assert from_s3.chunks_uri == f"s3://{s3_bucket}/artifacts/runs/s3/ingest/chunks"
    assert from_s3.n_documents == from_folder.n_documents == 16  # 2 files + 14 JSONL lines
    # Relative paths (not download locations) name the documents, so the artifacts are identical.
    assert from_s3.chunks_digest == from_folder.chunks_digest
    assert not list((tmp_path / "scratch").glob("ingest-corpus-*"))  # the download is cleaned up
