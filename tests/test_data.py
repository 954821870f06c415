"""The datasets domain through its API, CLI and SDK: imports of every format with malformed rows, immutable
content-addressed versions, labels, pipelines with lineage, cards, diffs, exports, traces to rows, tenancy."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import podium
from podium.core.db import utcnow
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, project_key, run_cli, serve_for_module


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_for_module(backend, tmp_path_factory.mktemp(f"data-{backend}"))


def _name(prefix: str = "ds") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload(live: LiveServer, name: str, body: bytes, fmt: str, key: str | None = None, **params: Any) -> Any:
    with live.client(key) as c:
        return c.post(f"/api/datasets/{name}/import", params={"format": fmt, **params}, content=body)


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def wait_job(live: LiveServer, job_id: str, key: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    with live.client(key) as c:
        while True:
            job = c.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            assert time.monotonic() < deadline, job
            time.sleep(0.1)


def prep(live: LiveServer, name: str, pipeline: Any, key: str | None = None, **body: Any) -> dict[str, Any]:
    with live.client(key) as c:
        r = c.post(f"/api/datasets/{name}/prep", json={"pipeline": pipeline, **body})
    assert r.status_code == 202, r.text
    return wait_job(live, r.json()["id"], key)


TICKETS = [
    {"id": 1, "text": "My order  arrived broken.\tPlease help!", "lang_hint": "en"},
    {"id": 2, "text": "My order arrived broken. Please help!", "lang_hint": "en"},
    {"id": 3, "text": "Write to me at jane.doe@example.com about the refund.", "lang_hint": "en"},
    {"id": 4, "text": "Ma commande est arrivée cassée, aidez-moi s'il vous plaît.", "lang_hint": "fr"},
    {"id": 5, "text": "The invoice total is wrong; I was charged twice for one item.", "lang_hint": "en"},
]


# --- imports -----------------------------------------------------------------------------------------


def test_jsonl_import_makes_a_content_addressed_version_and_the_same_rows_make_none(live: LiveServer) -> None:
    name = _name()
    r = upload(live, name, jsonl(TICKETS), "jsonl", filename="tickets.jsonl", message="first cut")
    assert r.status_code == 201, r.text
    v = r.json()["version"]
    assert (v["version"], v["row_count"], v["message"]) == (1, 5, "first cut")
    assert [c["name"] for c in v["columns"]] == ["id", "text", "lang_hint"]
    assert v["id"].startswith("dsv_") and len(v["content_hash"]) == 64
    assert v["lineage"]["kind"] == "import" and v["lineage"]["format"] == "jsonl"
    assert v["stats"]["columns"]["text"]["max"] == max(len(t["text"]) for t in TICKETS)
    again = upload(live, name, jsonl(TICKETS), "jsonl")
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["version"]["id"] == v["id"]
    with live.client() as c:
        rows = c.get(f"/api/datasets/{name}/versions/1/rows", params={"limit": 2, "offset": 1}).json()
        assert [row["id"] for row in rows["rows"]] == [2, 3] and rows["next_offset"] == 3
        found = c.get(f"/api/datasets/{name}/versions/latest/rows", params={"q": "REFUND"}).json()
        assert [row["id"] for row in found["rows"]] == [3] and found["matched"] == 1


def test_a_key_seen_late_and_types_that_disagree_are_kept(live: LiveServer) -> None:
    rows = [{"a": i} for i in range(12_000)] + [{"a": 1.5, "late": "here"}, {"a": "text now"}]
    r = upload(live, _name(), jsonl(rows), "jsonl")
    assert r.status_code == 201, r.text
    columns = {c["name"]: c["type"] for c in r.json()["version"]["columns"]}
    assert columns == {"a": "string", "late": "string"}
    assert r.json()["rows"] == 12_002


def test_malformed_rows_fail_the_import_whole_or_are_skipped_with_file_and_line(live: LiveServer) -> None:
    name = _name()
    body = jsonl(TICKETS[:2]) + b"{not json\n" + b"[1, 2]\n" + b'{"id": 9, "text": "caf\xe9"}\n' + jsonl(TICKETS[2:3])
    r = upload(live, name, body, "jsonl", filename="bad.jsonl")
    assert r.status_code == 400
    err = r.json()["error"]
    assert "bad.jsonl, line 3" in err["message"] and err["details"]["line"] == 3
    with live.client() as c:
        assert c.get(f"/api/datasets/{name}").status_code == 404  # nothing committed, not even the name
    r = upload(live, name, body, "jsonl", filename="bad.jsonl", on_error="skip")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["rows"] == 3 and out["bad_rows"] == 3
    assert [(p["line"], p["error"].split(" (")[0]) for p in out["problems"]] == [
        (3, "not valid JSON"),
        (4, "a JSON list, not an object"),
        (5, "not UTF-8"),
    ]
    assert out["version"]["lineage"]["problems"]["bad_rows"] == 3


def test_csv_import_types_numbers_and_reports_wrong_field_counts(live: LiveServer) -> None:
    text = 'id,question,score\n1,How do I reset?,0.5\n2,"Multi\nline, quoted",1\n3,too,many,fields\n4,Last,2\n'
    r = upload(live, _name(), text.encode(), "csv", filename="q.csv", on_error="skip")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["rows"] == 3 and out["problems"][0]["line"] == 5 and "4 fields" in out["problems"][0]["error"]
    assert {c["name"]: c["type"] for c in out["version"]["columns"]} == {
        "id": "int64",
        "question": "string",
        "score": "double",
    }
    assert upload(live, _name(), b"a,,a\n1,2,3\n", "csv").json()["error"]["details"]["field"] == "file"


def test_parquet_and_hf_imports_and_exports_round_trip(live: LiveServer, tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("formats are the same on every database")
    import datasets

    name = _name()
    table = pa.table({"id": [1, 2, 3], "text": ["a", "b", "c"], "tags": [["x"], [], ["y", "z"]]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    r = upload(live, name, buf.getvalue(), "parquet")
    assert r.status_code == 201, r.text
    # a saved DatasetDict: its splits become a `split` column
    saved = tmp_path / "hf"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"q": ["a", "b"]}), "test": datasets.Dataset.from_dict({"q": ["c"]})}
    ).save_to_disk(str(saved))
    env = {"PODIUM_URL": live.url, "PODIUM_API_KEY": live.admin_key}
    hf_name = _name("hf")
    done = run_cli("data", "import", str(saved), "--name", hf_name, "--json", env=env)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["rows"] == 3 and imported["version"]["lineage"]["format"] == "hf"
    assert sorted(podium.data.get(hf_name, url=live.url, api_key=live.admin_key).to_pandas()["split"]) == [
        "test",
        "train",
        "train",
    ]
    # exports: jsonl, csv, parquet, hf
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"out.{fmt}"
        done = run_cli("data", "export", f"{name}@1", "--format", fmt, "--out", str(out), env=env)
        assert done.returncode == 0, done.stderr
    assert [json.loads(line)["tags"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        ["x"],
        [],
        ["y", "z"],
    ]
    assert list(csv.DictReader((tmp_path / "out.csv").open()))[2] == {"id": "3", "text": "c", "tags": '["y","z"]'}
    assert pq.read_table(tmp_path / "out.parquet").equals(table)
    done = run_cli("data", "export", f"{hf_name}@latest", "--format", "hf", "--out", str(tmp_path / "hf-out"), env=env)
    assert done.returncode == 0, done.stderr
    back = datasets.load_from_disk(str(tmp_path / "hf-out"))
    assert isinstance(back, datasets.DatasetDict) and back["train"]["q"] == ["a", "b"] and back["test"]["q"] == ["c"]


def test_a_folder_of_documents_is_one_row_per_file_with_its_path(
    live: LiveServer, tmp_path: Path, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("formats are the same on every database")
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "readme.md").write_text("# Podium\n\nHello.")
    (docs / "guides" / "setup.txt").write_text("Run make run.")
    (docs / "guides" / "page.html").write_text("<html><body><p>Hi</p></body></html>")
    (docs / "image.png").write_bytes(b"\x89PNG")
    (docs / "guides" / "latin1.txt").write_bytes(b"caf\xe9")
    env = {"PODIUM_URL": live.url, "PODIUM_API_KEY": live.admin_key}
    name = _name("docs")
    done = run_cli("data", "import", str(docs), "--name", name, "--on-error", "skip", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["bad_rows"] == 1 and result["problems"][0]["file"] == "guides/latin1.txt"
    rows = podium.data.get(name, url=live.url, api_key=live.admin_key).to_pandas()
    assert sorted(rows["path"]) == ["guides/page.html", "guides/setup.txt", "readme.md"]
    assert dict(zip(rows["path"], rows["format"], strict=True))["guides/page.html"] == "html"


# --- versions, labels, pipelines --------------------------------------------------------------------


def test_a_three_step_pipeline_records_lineage_and_labels_move(live: LiveServer) -> None:
    name = _name()
    assert upload(live, name, jsonl(TICKETS), "jsonl").status_code == 201
    pipeline = """
seed: 3
steps:
  - normalize: {unicode: NFKC}
  - dedup: {field: text}
  - pii: {mode: redact}
"""
    job = prep(live, name, pipeline, message="cleaned")
    assert job["status"] == "succeeded", job
    with live.client() as c:
        v2 = c.get(f"/api/datasets/{name}/versions/2").json()
        v1 = c.get(f"/api/datasets/{name}/versions/1").json()
        assert v2["parents"] == [{"id": v1["id"], "dataset": name, "version": 1}]
        steps = v2["lineage"]["steps"]
        assert [s["step"] for s in steps] == ["normalize", "dedup", "pii"]
        assert steps[0]["config"]["unicode"] == "NFKC" and v2["lineage"]["pipeline"]["seed"] == 3
        assert [(s["rows_in"], s["rows_out"]) for s in steps] == [(5, 5), (5, 4), (4, 4)]
        assert steps[1]["report"]["duplicates"] == 1
        rows = c.get(f"/api/datasets/{name}/versions/2/rows").json()["rows"]
        assert [r["id"] for r in rows] == [1, 3, 4, 5]
        assert "jane.doe@example.com" not in rows[1]["text"] and "[EMAIL]" in rows[1]["text"]
        card = c.get(f"/api/datasets/{name}/versions/2/card").json()
        assert card["duplicates_removed"] == {"dedup": 1} and card["pii"].get("EMAIL") == 1
        assert [a["version"] for a in card["lineage"]] == [2, 1]
        # labels
        r = c.put(f"/api/datasets/{name}/labels/golden", json={"version": 1})
        assert r.status_code == 200 and r.json()["version"] == 1
        c.put(f"/api/datasets/{name}/labels/golden", json={"version": 2})
        assert c.get(f"/api/datasets/{name}/versions/golden").json()["id"] == v2["id"]
        detail = c.get(f"/api/datasets/{name}").json()
        assert [(m["from_version"], m["to_version"]) for m in detail["history"]] == [(1, 2), (None, 1)]
        assert c.put(f"/api/datasets/{name}/labels/latest", json={"version": 1}).status_code == 400
        missing = c.get(f"/api/datasets/{name}/versions/nope").json()["error"]
        assert "golden" in missing["message"]
        # the diff of the two versions: by the `id` column both have
        d = c.get(f"/api/datasets/{name}/diff", params={"a": "1", "b": "golden"}).json()
        assert (d["key"], d["rows_added"], d["rows_removed"], d["rows_changed"]) == ("id", 0, 1, 2)
        assert {ch["key"] for ch in d["changed"]} == {1, 3} and d["removed"][0]["id"] == 2
        assert all(ch["fields"] == ["text"] for ch in d["changed"])


def test_a_bad_pipeline_is_refused_before_any_work_naming_the_field(live: LiveServer) -> None:
    name = _name()
    assert upload(live, name, jsonl(TICKETS), "jsonl").status_code == 201
    cases = [
        ({"steps": [{"normalize": {}}, {"shuffle": {}}]}, "steps[1]"),
        ({"steps": [{"dedup": {"feild": "text"}}]}, "steps[0].feild"),
        ({"steps": [{"dedup": {"field": "body"}}]}, "steps[0].field"),
        ("steps: [normalize", "pipeline"),
        ({"steps": []}, "steps"),
    ]
    with live.client() as c:
        before = c.get("/api/jobs", params={"kind": "data.prep", "limit": 500}).json()["items"]
        for pipeline, field in cases:
            r = c.post(f"/api/datasets/{name}/prep", json={"pipeline": pipeline})
            assert r.status_code == 400, (pipeline, r.text)
            assert r.json()["error"]["details"]["field"] == field, r.text
        after = c.get("/api/jobs", params={"kind": "data.prep", "limit": 500}).json()["items"]
        assert len(after) == len(before)
        assert c.get(f"/api/datasets/{name}").json()["latest_version"] == 1


def test_a_pipeline_that_fails_midway_leaves_no_version(live: LiveServer) -> None:
    name = _name("chat")
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "assistant", "content": "I speak first"}]},
    ]
    assert upload(live, name, jsonl(rows), "jsonl").status_code == 201
    job = prep(live, name, {"steps": [{"chat_validate": {"action": "fail"}}]})
    assert job["status"] == "failed" and "row 1" in job["error"]
    with live.client() as c:
        assert c.get(f"/api/datasets/{name}").json()["latest_version"] == 1
    ok = prep(live, name, {"steps": [{"chat_validate": {"action": "drop"}}]})
    assert ok["status"] == "succeeded" and ok["result"]["rows"] == 1


# --- traces become rows --------------------------------------------------------------------------


def test_traces_with_their_scores_and_feedback_become_rows_linked_to_them(live: LiveServer) -> None:
    tag = "t-" + uuid.uuid4().hex[:8]
    now = utcnow()
    ids = []
    for i in range(3):
        tid = f"{tag}-{i}"
        ids.append(tid)
        body = {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}]}
        answer = {"choices": [{"message": {"role": "assistant", "content": f"answer {i}"}}]}
        span = {
            "id": f"{tid}-s",
            "trace_id": tid,
            "kind": "llm",
            "name": "chat",
            "model": "m",
            "tags": [tag],
            "start_time": (now + timedelta(milliseconds=i)).isoformat(),
            "input": body,
            "output": answer,
        }
        with live.client() as c:
            assert c.post("/api/traces/ingest", json={"spans": [span]}).status_code == 202
    assert live.app.state.runtime.get(TraceWriter).flush(10)
    with live.client() as c:
        r = c.post(
            "/api/scores",
            json={"trace_id": ids[1], "name": "helpful", "value": 1, "source": "user", "comment": "exactly right"},
        )
        assert r.status_code == 201, r.text
        c.post("/api/scores", json={"trace_id": ids[2], "name": "helpful", "value": 0, "source": "user"})
        name = _name("from-traces")
        r = c.post(f"/api/datasets/{name}/import-traces", json={"filters": {"tag": tag}})
        assert r.status_code == 201, r.text
        v = r.json()["version"]
        assert v["row_count"] == 3 and v["lineage"]["kind"] == "traces" and v["lineage"]["counts"]["traces"] == 3
        good = c.post(
            f"/api/datasets/{name}/import-traces", json={"filters": {"tag": tag}, "score": "helpful", "min_score": 1}
        ).json()
        assert good["rows"] == 1
        assert (
            c.post(f"/api/datasets/{name}/import-traces", json={"filters": {"tagg": "x"}, "limt": 1}).status_code == 400
        )
    rows = podium.data.get(f"{name}@2", url=live.url, api_key=live.admin_key).to_pandas()
    row = rows.iloc[0]
    assert row["trace_id"] == ids[1] and row["feedback"] == "exactly right"
    assert [dict(m) for m in row["messages"]] == [
        {"role": "user", "content": "question 1"},
        {"role": "assistant", "content": "answer 1"},
    ]
    assert [(s["name"], s["value"], s["source"]) for s in row["scores"]] == [("helpful", 1.0, "user")]


# --- tenancy -------------------------------------------------------------------------------------


def test_a_dataset_belongs_to_its_project(live: LiveServer) -> None:
    a, b = _name("pa"), _name("pb")
    member_a, viewer_a, member_b = project_key(live, a), project_key(live, a, "viewer"), project_key(live, b)
    name = _name()
    assert upload(live, name, jsonl(TICKETS), "jsonl", key=member_a).status_code == 201
    with live.client(member_b) as c:
        assert c.get(f"/api/datasets/{name}").status_code == 404
        assert c.get(f"/api/datasets/{name}/versions/1/rows").status_code == 404
        assert name not in [d["name"] for d in c.get("/api/datasets").json()]
        assert c.put(f"/api/datasets/{name}/labels/x", json={"version": 1}).status_code == 404
        assert c.post(f"/api/datasets/{name}/prep", json={"pipeline": {"steps": ["dedup"]}}).status_code == 404
    taken = upload(live, name, jsonl(TICKETS[:1]), "jsonl", key=member_b)
    assert taken.status_code == 409 and "another project" in taken.json()["error"]["message"]
    with live.client(viewer_a) as c:
        assert c.get(f"/api/datasets/{name}/versions/1/card").status_code == 200
        assert c.put(f"/api/datasets/{name}/labels/x", json={"version": 1}).status_code == 403
    assert upload(live, name, jsonl(TICKETS[:1]), "jsonl", key=viewer_a).status_code == 403


# --- bounded memory ------------------------------------------------------------------------------

MEMORY_SCRIPT = """
import resource, sys, json
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.conftest import make_settings, prepared_platform
from podium.core.identity import Actor
from podium.data import service
home = Path({home!r})
platform, _ = prepared_platform(make_settings(home, "sqlite:///" + str(home / "p.db")))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = service.import_file(platform, Actor.system(), "big", Path({path!r}))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rows": result.rows, "before_kb": before, "after_kb": after}}))
"""


def test_a_large_import_streams_in_bounded_memory(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("memory does not depend on the database")
    import subprocess
    import sys

    path = tmp_path / "big.jsonl"
    rows = 300_000
    with open(path, "w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": i, "text": f"row {i} " + "lorem ipsum dolor sit amet " * 6, "n": i % 7}) + "\n")
    size_mb = path.stat().st_size / 1e6
    script = MEMORY_SCRIPT.format(root=str(Path(__file__).parent.parent), home=str(tmp_path / "home"), path=str(path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["rows"] == rows
    grown_mb = (out["after_kb"] - out["before_kb"]) / 1024
    # the file is ~60 MB and its rows as Python objects several times that: growth stays a fraction of it
    assert size_mb > 50 and grown_mb < 0.75 * size_mb, (size_mb, grown_mb)


# --- tokenizers of registered models ---------------------------------------------------------------


def test_token_steps_use_a_registered_models_tokenizer(live: LiveServer) -> None:
    from .models_fixtures import minilm_dir

    model = _name("tok")
    with live.client() as c:
        r = c.post("/api/models", json={"name": model, "source": str(minilm_dir())})
        assert r.status_code in (200, 201, 202), r.text
        if r.status_code == 202:  # registered by a job
            assert wait_job(live, r.json()["id"])["status"] == "succeeded"
    name = _name("docs")
    text = "# Setup\n\nInstall the package.\n\n## Run\n\n" + " ".join(f"word{i}" for i in range(300))
    assert upload(live, name, jsonl([{"text": text}, {"text": "short one"}]), "jsonl").status_code == 201
    pipeline = {"steps": [{"tokenize": {"tokenizer": model, "max_tokens": 5}}]}
    job = prep(live, name, pipeline, into=_name("short"))
    assert job["status"] == "succeeded", job
    with live.client() as c:
        short = c.get(f"/api/datasets/{job['result']['dataset']}/versions/latest/rows").json()["rows"]
        assert [r["text"] for r in short] == ["short one"] and short[0]["n_tokens"] == 2
        chunks = prep(
            live, name, {"steps": [{"chunk": {"unit": "tokens", "tokenizer": model, "size": 64, "overlap": 8}}]}
        )
        assert chunks["status"] == "succeeded", chunks
        rows = c.get(f"/api/datasets/{name}/versions/latest/rows", params={"limit": 100}).json()["rows"]
        assert len(rows) > 3 and {r["source_row"] for r in rows} == {0, 1}
        assert all(text[r["start"] : r["end"]] == r["text"] for r in rows if r["source_row"] == 0)
        bad = c.post(f"/api/datasets/{name}/prep", json={"pipeline": {"steps": [{"tokenize": {"tokenizer": "nope"}}]}})
        assert bad.status_code == 404 and "nope" in bad.json()["error"]["message"]


def test_the_cli_reads_like_the_api(live: LiveServer, tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the CLI calls the same API on every database")
    env = {"PODIUM_URL": live.url, "PODIUM_API_KEY": live.admin_key}
    source = tmp_path / "tickets.jsonl"
    source.write_bytes(jsonl(TICKETS))
    name = _name("cli")
    assert run_cli("data", "import", str(source), "--name", name, env=env).returncode == 0
    (tmp_path / "clean.yaml").write_text("steps:\n  - normalize: {}\n  - dedup: {field: text}\n")
    done = run_cli("data", "prep", f"{name}@1", "--pipeline", str(tmp_path / "clean.yaml"), "-m", "clean", env=env)
    assert done.returncode == 0, done.stderr
    assert run_cli("data", "tag", f"{name}@2", "train-v1", env=env).returncode == 0
    listed = json.loads(run_cli("data", "ls", "--json", env=env).stdout)
    mine = next(d for d in listed if d["name"] == name)
    assert (mine["latest_version"], mine["rows"], mine["labels"]) == (2, 4, {"train-v1": 2})
    shown = run_cli("data", "show", f"{name}@train-v1", env=env)
    assert shown.returncode == 0 and "dedup" in shown.stdout and "rows: 4" in shown.stdout
    head = run_cli("data", "head", f"{name}@train-v1", "-n", "2", "--grep", "invoice", env=env)
    assert [json.loads(line)["id"] for line in head.stdout.splitlines()] == [5]
    diff = run_cli("data", "diff", f"{name}@1", "train-v1", env=env)
    assert diff.returncode == 0 and "-1" in diff.stdout and "~1" in diff.stdout
    bad = run_cli("data", "head", f"{name}@nope", env=env)
    assert bad.returncode != 0 and "train-v1" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("data", "import", str(tmp_path / "none.jsonl"), "--name", name, env=env)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_the_sdk_pushes_prepares_and_reads_back(live: LiveServer, tmp_path: Path) -> None:
    import pandas as pd

    opts = {"url": live.url, "api_key": live.admin_key}
    name = _name("sdk")
    frame = pd.DataFrame({"id": [1, 2, 3], "text": ["Same text", "same   TEXT", "other"]})
    pushed = podium.data.push(name, frame, message="from pandas", **opts)
    assert pushed["created"] and pushed["version"]["row_count"] == 3
    job = podium.data.prep(f"{name}@1", [{"dedup": {"field": "text"}}], **opts)
    assert job["result"]["rows"] == 2
    v = podium.data.get(f"{name}@latest", cache_dir=tmp_path / "cache", **opts)
    assert len(v) == 2 and list(v.to_pandas()["id"]) == [1, 3] and v.ref == f"{name}@2"
    assert (tmp_path / "cache" / f"{v.info['content_hash']}.parquet").exists()
    with pytest.raises(podium.core.errors.InvalidInput, match=r"steps\[0\]"):
        podium.data.prep(f"{name}@1", [{"dedupe": {}}], **opts)


def test_near_duplicates_are_removed_through_a_pipeline_and_counted_on_the_card(live: LiveServer) -> None:
    import random

    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(2000)]
    docs = [" ".join(rng.choice(vocab) for _ in range(120)) for _ in range(20)]
    words = docs[3].split()
    words[50:56] = ["edited"] * 6  # a 5% edit in one span
    rows = [{"id": i, "text": t} for i, t in enumerate([*docs, " ".join(words)])]
    name = _name("near")
    assert upload(live, name, jsonl(rows), "jsonl").status_code == 201
    job = prep(live, name, {"steps": [{"near_dedup": {"threshold": 0.7}}]})
    assert job["status"] == "succeeded" and job["result"]["rows"] == 20, job
    with live.client() as c:
        v = c.get(f"/api/datasets/{name}/versions/2").json()
        report = v["lineage"]["steps"][0]["report"]
        assert report["clusters"][0]["kept"] == 3 and report["clusters"][0]["removed"] == [20]
        card = c.get(f"/api/datasets/{name}/versions/2/card").json()
        assert card["duplicates_removed"] == {"near_dedup": 1}


def test_a_gguf_models_tokenizer_counts_tokens(live: LiveServer, tiny_gguf: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("tokenizers load the same on every database")
    model = _name("gguf")
    with live.client() as c:
        r = c.post("/api/models", json={"name": model, "source": str(tiny_gguf)})
        assert r.status_code in (200, 201, 202), r.text
        if r.status_code == 202:
            assert wait_job(live, r.json()["id"])["status"] == "succeeded"
    name = _name("tok")
    assert upload(live, name, jsonl([{"text": "hello world"}, {"text": ""}]), "jsonl").status_code == 201
    job = prep(live, name, {"steps": [{"tokenize": {"tokenizer": model}}]})
    assert job["status"] == "succeeded", job
    with live.client() as c:
        rows = c.get(f"/api/datasets/{name}/versions/latest/rows").json()["rows"]
        card = c.get(f"/api/datasets/{name}/versions/latest/card").json()
    assert rows[0]["n_tokens"] > 0 and rows[1]["n_tokens"] == 0
    assert sum(card["tokens"]["histogram"]) == 2


def test_an_upload_with_a_bad_format_or_policy_is_refused_naming_it(live: LiveServer) -> None:
    assert upload(live, _name(), b"x", "xlsx").json()["error"]["details"]["field"] == "format"
    assert upload(live, _name(), b"x", "jsonl", on_error="ignore").json()["error"]["details"]["field"] == "on_error"
    empty = upload(live, _name(), b"", "jsonl")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    bad_tar = upload(live, _name(), b"not a tar archive", "folder")
    assert bad_tar.status_code == 400 and "tar" in bad_tar.json()["error"]["message"]


def test_hostile_uploads_are_refused_before_they_cost_anything(live: LiveServer, tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("uploads are checked the same way on every database")
    import tarfile

    import datasets

    from podium.data import uploads

    # a saved dataset whose state.json names a file outside its folder
    secret = tmp_path / "secret"
    datasets.Dataset.from_dict({"q": ["server-side secret"]}).save_to_disk(str(secret))
    evil = tmp_path / "evil"
    datasets.Dataset.from_dict({"q": ["x"]}).save_to_disk(str(evil))
    state = json.loads((evil / "state.json").read_text())
    state["_data_files"] = [{"filename": str(next(secret.glob("*.arrow")))}]
    (evil / "state.json").write_text(json.dumps(state))
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(evil, arcname="evil")
    r = upload(live, _name(), archive.read_bytes(), "hf")
    assert r.status_code == 400 and "outside its folder" in r.json()["error"]["message"], r.text
    # an archive of many empty entries stops at the entry limit, while being read
    many = tmp_path / "many.tar"
    with tarfile.open(many, "w") as tar:
        for i in range(60):
            tar.addfile(tarfile.TarInfo(f"f{i}.txt"), io.BytesIO(b""))
    saved = uploads.MAX_ARCHIVE_MEMBERS
    uploads.MAX_ARCHIVE_MEMBERS = 50
    try:
        r = upload(live, _name(), many.read_bytes(), "folder")
    finally:
        uploads.MAX_ARCHIVE_MEMBERS = saved
    assert r.status_code == 400 and "over 50 entries" in r.json()["error"]["message"]


def test_edge_cases_of_search_diff_and_types_answer_clearly(live: LiveServer) -> None:
    name = _name()
    rows = [
        {"id": 1, "text": "a", "tags": ["x"]},
        {"id": 1, "text": "b", "tags": []},
        {"id": 2, "text": "c", "tags": []},
    ]
    assert upload(live, name, jsonl(rows), "jsonl").status_code == 201
    assert upload(live, name, jsonl([rows[0], rows[2]]), "jsonl").status_code == 201
    with live.client() as c:
        r = c.get(f"/api/datasets/{name}/versions/1/rows", params={"q": "1", "column": "id"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "column"
        d = c.get(f"/api/datasets/{name}/diff", params={"a": "1", "b": "2"}).json()
        assert d["key"] is None and (d["rows_removed"], d["rows_unchanged"]) == (1, 2)  # `id` repeats: by content
        assert c.get(f"/api/datasets/{name}/diff", params={"a": "1", "b": "2", "key": "tags"}).status_code == 400
        other = _name()
        assert upload(live, other, jsonl(rows[:1]), "jsonl").status_code == 201
        foreign = c.get(f"/api/datasets/{other}/versions/1").json()["id"]
        r = c.get(f"/api/datasets/{name}/versions/{foreign}")
        assert r.status_code == 404 and other not in r.text
    # nulls first, numbers later: the column is a number column, not text
    late = [{"n": None}] * 6000 + [{"n": 5}]
    v = upload(live, _name(), jsonl(late), "jsonl").json()["version"]
    assert {c["name"]: c["type"] for c in v["columns"]} == {"n": "int64"}
    # CSV types are chosen over every row: zip codes stay text when one value later is not a number
    text = "zip\n" + "".join(f"00{i % 10}\n" for i in range(6000)) + "N1 4AA\n"
    v = upload(live, _name(), ("\ufeff" + text).encode(), "csv").json()["version"]
    assert {c["name"]: c["type"] for c in v["columns"]} == {"zip": "string"}
    unterminated = upload(live, _name(), b'a,b\n0,1\n1,"open\n2,3\n', "csv", on_error="skip").json()
    assert (unterminated["rows"], unterminated["bad_rows"], unterminated["problems"][0]["line"]) == (1, 1, 3)


def test_a_pipeline_job_acts_with_the_rights_its_submitter_has_when_it_runs(
    tmp_path_factory: pytest.TempPathFactory, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("rights are read the same way on every database")
    from podium.jobs.service import LocalBackend

    served = serve_for_module("sqlite", tmp_path_factory.mktemp("held-jobs"), job_workers=0)  # jobs wait
    live = next(served)
    try:
        project, user = _name("pj"), _name("u")
        with live.client() as c:
            assert c.post("/api/projects", json={"name": project}).status_code == 201
            assert c.post("/api/users", json={"name": user, "role": "member", "project": project}).status_code == 201
            key = c.post("/api/keys", json={"name": "k", "user": user, "project": project}).json()["key"]
            # jobs of this kind are queued by the datasets API only, which records who queued them
            forged = {"kind": "data.prep", "params": {"source": "x", "pipeline": {}, "key_id": "key_x"}}
            r = c.post("/api/jobs", json=forged)
            assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "kind"
        name = _name()
        assert upload(live, name, jsonl(TICKETS), "jsonl", key=key).status_code == 201
        with live.client(key) as c:
            kept = c.post(f"/api/datasets/{name}/prep", json={"pipeline": {"steps": ["dedup"]}}).json()
        with live.client() as c:
            assert c.delete(f"/api/projects/{project}/members/{user}").status_code in (200, 204)
        runner = LocalBackend(live.platform, workers=1)
        runner.start()
        try:
            done = wait_job(live, kept["id"])
        finally:
            runner.stop(5)
        assert done["status"] == "failed" and "no longer a member" in done["error"], done
        with live.client() as c:
            assert c.get(f"/api/datasets/{name}").json()["latest_version"] == 1
    finally:
        next(served, None)
