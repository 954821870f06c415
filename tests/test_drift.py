"""Drift reports through the public API, on traces the tests send through `POST /api/traces/ingest` and on a dataset
version: drift detected on constructed shifted traffic (billing questions in English, then questions about drone
deliveries in French, longer, with longer answers), and not detected on two random halves of one distribution;
the descriptor PSI figures move the expected way; the explanation names the shifted words and shows shifted
examples; a report as a job, the latest report, the CLI, roles and bad input. The domain classifier and the
descriptors do not depend on the database: everything runs on SQLite, the detection test on PostgreSQL too.

The texts come from seeded generators and a report orders its texts by text, so each report here is the same on
every run. The classifier's test calls drift above a random classifier's 95th percentile, so two samples of one
distribution read as drift about one time in twenty by design; the seeds here are such samples that do not."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from podium.core.db import utcnow
from podium.core.identity import Actor
from podium.tracing.service import TraceFilters, sample_texts
from podium.tracing.writer import TraceWriter

from .conftest import LiveServer, project_key, run_cli, serve_for_module

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

N = 80  # traces per window

ACTIONS = ["update", "change", "cancel", "check", "download", "dispute", "pay", "split", "refund", "review"]
THINGS = [
    "my invoice",
    "the billing address",
    "my credit card",
    "the monthly subscription",
    "a duplicate charge",
    "my payment method",
    "the annual plan",
    "last month's bill",
    "the VAT number",
    "my receipt",
]
TAILS = ["?", " please?", " today?", ", thanks.", " before Friday?", " for my account?"]
ANSWERS = [  # cheerful: VADER scores them well above zero, the French answers near zero
    "Great question! Go to Settings, then Billing. Happy to help!",
    "Good news: you can do that from the Billing page. Thanks, and have a wonderful day!",
    "Sure, glad to help! Open your account and choose Payments.",
    "Thank you! Our friendly billing team will gladly help you with that.",
]
FRENCH = [
    "Comment puis-je suivre la livraison par drone de ma commande",
    "Le drone de livraison a laissé mon colis chez le voisin, que faire",
    "Pourquoi la livraison par drone est-elle retardée depuis hier",
    "Est-ce que le drone peut livrer directement à mon bureau",
]
FRENCH_ANSWERS = [
    "Nous sommes désolés pour ce retard de livraison par drone. Votre colis sera livré demain matin entre neuf"
    " heures et midi, et vous recevrez une notification avant l'arrivée du drone.",
    "Le drone dépose les colis uniquement à l'adresse indiquée lors de la commande. Pour changer l'adresse de"
    " livraison, ouvrez votre commande et choisissez une nouvelle destination.",
]


def billing(rng: random.Random) -> tuple[str, str]:
    return f"How can I {rng.choice(ACTIONS)} {rng.choice(THINGS)}{rng.choice(TAILS)}", rng.choice(ANSWERS)


def drones(rng: random.Random) -> tuple[str, str]:
    question = (
        f"{rng.choice(FRENCH)} ? Commande numéro {rng.randint(100, 999)}. Merci de me répondre rapidement, c'est"
        " urgent pour mon entreprise et pour mes clients."
    )
    return question, rng.choice(FRENCH_ANSWERS)


def send(live: LiveServer, key: str, pairs: list[tuple[str, str | None]], start: datetime) -> None:
    """One trace per (question, answer): a chat request and its OpenAI-shaped answer (none for None), a second
    apart."""
    spans = []
    for i, (question, answer) in enumerate(pairs):
        tid = "trc-" + uuid.uuid4().hex[:20]
        spans.append(
            {
                "id": f"{tid}-s",
                "trace_id": tid,
                "kind": "llm",
                "name": "chat",
                "model": "support-bot",
                "prompt_version_id": "prv_support",
                "start_time": (start + timedelta(seconds=i)).isoformat(),
                "input": {"model": "support-bot", "messages": [{"role": "user", "content": question}]},
                "output": {"choices": [{"message": {"role": "assistant", "content": answer}}]} if answer else None,
            }
        )
    with live.client(key) as c:
        r = c.post("/api/traces/ingest", json={"spans": spans})
    assert r.status_code == 202, r.text
    assert live.app.state.runtime.get(TraceWriter).flush(10)


class World:
    """Two projects of traffic: `shifted` (billing, then drones in French) and `steady` (billing throughout),
    each with a reference window [t0, t1) and a current window [t1, t2)."""

    def __init__(self, live: LiveServer):
        self.live = live
        self.t0 = utcnow().replace(microsecond=0) - timedelta(hours=3)
        self.t1 = self.t0 + timedelta(hours=1)
        self.t2 = self.t1 + timedelta(hours=1)
        tag = uuid.uuid4().hex[:6]
        self.shifted, self.steady = f"drift-shifted-{tag}", f"drift-steady-{tag}"
        self.key = project_key(live, self.shifted)
        self.steady_key = project_key(live, self.steady)
        self.viewer = project_key(live, self.shifted, "viewer")
        rng = random.Random(7)
        send(live, self.key, [billing(rng) for _ in range(N)], self.t0)
        send(live, self.key, [drones(rng) for _ in range(N)], self.t1)
        halves = [billing(rng) for _ in range(2 * N)]  # one distribution, split in two at random by time
        send(live, self.steady_key, halves[:N], self.t0)
        send(live, self.steady_key, halves[N:], self.t1)

    def spec(self, **extra: Any) -> dict[str, Any]:
        body = {
            "current_from": self.t1.isoformat(),
            "current_to": self.t2.isoformat(),
            "reference_from": self.t0.isoformat(),
            "reference_to": self.t1.isoformat(),
        }
        return {**body, **extra}

    def post(self, path: str, body: dict[str, Any], key: str | None = None) -> Any:
        with self.live.client(key or self.key) as c:
            return c.post(path, json=body, timeout=300)


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for live in serve_for_module(backend, tmp_path_factory.mktemp(f"drift-{backend}")):
        yield World(live)


def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("drift's statistics are the same on every database")


def result_of(report: dict[str, Any], field: str, name: str) -> dict[str, Any]:
    f = next(f for f in report["fields"] if f["field"] == field)
    return next(t for t in f["tests"] if t["name"] == name)


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, float | None, str]]:
    """Each test's field, name, score and verdict (for assertion messages)."""
    return [(f["field"], t["name"], t["score"], t["verdict"]) for f in report["fields"] for t in f["tests"]]


def field_of(report: dict[str, Any], field: str) -> dict[str, Any]:
    return next(f for f in report["fields"] if f["field"] == field)


def test_shifted_traffic_is_drift_with_its_explanation(world: World) -> None:
    r = world.post("/api/drift/reports", world.spec())
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["drift"] is True and report["id"].startswith("drr_")
    for field in ("input", "output"):
        f = field_of(report, field)
        assert f["status"] == "ok" and f["reference_used"] == N and f["current_used"] == N and not f["sampled"]
        emb = result_of(report, field, "embedding")
        assert emb["verdict"] == "drift" and emb["score"] > emb["threshold"] >= 0.55
        for name in ("length_chars", "length_words"):
            length = result_of(report, field, name)
            assert length["verdict"] == "drift" and length["score"] > 0.2
            assert length["current_mean"] > length["reference_mean"]
            assert len(length["bins"]) == len(length["reference_shares"]) == len(length["current_shares"]) == 3
        lang = result_of(report, field, "language")
        assert lang["verdict"] == "drift"
        shares = dict(
            zip(lang["bins"], zip(lang["reference_shares"], lang["current_shares"], strict=True), strict=True)
        )
        assert shares["fr"][1] > 0.9 > shares["fr"][0] and shares["en"][0] > 0.9
    mood = result_of(report, "output", "sentiment")  # cheerful English answers, then neutral French ones
    assert mood["verdict"] == "drift" and mood["current_mean"] < 0.2 < mood["reference_mean"]
    assert result_of(report, "input", "toxicity")["verdict"] in ("none", "moderate", "drift")
    inputs = field_of(report, "input")
    risen = [w["word"] for w in inputs["words_up"]]
    assert {"drone", "livraison", "commande"} & set(risen)
    assert not {"et", "de", "la", "le", "pour", "est"} & set(risen)  # French common words are left out
    assert all(w["z"] > 0 and w["reference_share"] == 0 and w["current_share"] > 0.2 for w in inputs["words_up"])
    fallen = [w["word"] for w in inputs["words_down"]]
    assert {"invoice", "billing", "subscription", "receipt"} & set(fallen)
    assert all("drone" in e["text"] for e in inputs["current_like"])
    assert all(e["text"].startswith("How can I") for e in inputs["reference_like"])
    assert all(e["trace_id"] for e in inputs["current_like"])
    assert report["score"] == max(result_of(report, f, "embedding")["score"] for f in ("input", "output"))
    # more traces than asked: a random sample of distinct traces, drawn by the database (random() on both)
    window = TraceFilters(project=world.shifted, start=world.t1, end=world.t2)
    got = sample_texts(world.live.platform, Actor.system(), window, "input", 25)
    assert got.sampled and got.total == N and len({i for i, _ in got.texts}) == len(got.texts) == 25
    assert all("drone" in text for _, text in got.texts)


def test_unshifted_traffic_is_not_drift(world: World, backend: str) -> None:
    sqlite_only(backend)
    r = world.post("/api/drift/reports", world.spec(), world.steady_key)
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["drift"] is False, json.dumps(report["fields"], indent=1)[:3000]
    for field in ("input", "output"):
        for t in field_of(report, field)["tests"]:
            assert t["verdict"] in ("none", "moderate"), t
        emb = result_of(report, field, "embedding")
        assert emb["score"] < emb["threshold"]
        assert result_of(report, field, "language")["score"] < 0.1


def _dataset(world: World, key: str, pairs: list[tuple[str, str]]) -> str:
    name = f"drift-ref-{uuid.uuid4().hex[:6]}"
    body = "".join(json.dumps({"question": q, "answer": a, "n": i}) + "\n" for i, (q, a) in enumerate(pairs))
    with world.live.client(key) as c:
        r = c.post(f"/api/datasets/{name}/import", params={"format": "jsonl"}, content=body.encode())
    assert r.status_code == 201, r.text
    return f"{name}@1"


def test_a_dataset_version_as_the_reference(world: World, backend: str) -> None:
    sqlite_only(backend)
    rng = random.Random(11)
    ref = _dataset(world, world.steady_key, [billing(rng) for _ in range(N)])
    spec = {
        "current_from": world.t1.isoformat(),
        "current_to": world.t2.isoformat(),
        "reference_dataset": ref,
        "reference_input_column": "question",
        "reference_output_column": "answer",
    }
    same = world.post("/api/drift/reports", spec, world.steady_key)
    assert same.status_code == 201, same.text
    assert same.json()["drift"] is False, verdicts(same.json())
    assert same.json()["reference"].startswith(f"dataset {ref}")
    ref2 = _dataset(world, world.key, [billing(rng) for _ in range(N)])
    shifted = world.post(
        "/api/drift/reports", {**spec, "reference_dataset": ref2, "reference_output_column": None}, world.key
    ).json()
    assert shifted["drift"] is True and [f["field"] for f in shifted["fields"]] == ["input"]
    assert result_of(shifted, "input", "embedding")["verdict"] == "drift"
    assert {"drone", "livraison", "commande"} & {w["word"] for w in field_of(shifted, "input")["words_up"]}
    # an unknown column, a column that is not text, a field without a column
    for change, field in (
        ({"reference_input_column": "questions"}, "reference_input_column"),
        ({"reference_output_column": "n"}, "reference_output_column"),
        ({"reference_output_column": None, "fields": ["input", "output"]}, "reference_output_column"),
        ({"reference_input_column": None, "reference_output_column": None}, "reference_input_column"),
        ({"reference_dataset": "no-such-dataset@1"}, "reference_dataset"),
        ({"reference_from": world.t0.isoformat()}, "reference_dataset"),
    ):
        r = world.post("/api/drift/reports", {**spec, **change}, world.steady_key)
        assert r.status_code in (400, 404), r.text
        assert r.json()["error"]["details"]["field"] == field, (change, r.text)


def test_bad_questions_name_the_field(world: World, backend: str) -> None:
    sqlite_only(backend)
    t0, t1, t2 = world.t0, world.t1, world.t2
    hour = timedelta(hours=1)
    cases = [
        (
            {"reference_from": (t0 - 5 * hour).isoformat(), "reference_to": (t0 - 4 * hour).isoformat()},
            "reference_from",
        ),
        ({"reference_to": (t1 + timedelta(minutes=30)).isoformat()}, "reference_to"),
        ({"reference_from": t1.isoformat(), "reference_to": t2.isoformat()}, "reference_to"),
        ({"current_to": t1.isoformat()}, "current_to"),
        ({"reference_to": None}, "reference_to"),
        ({"current_from": (t2 + hour).isoformat(), "current_to": (t2 + 2 * hour).isoformat()}, "current_from"),
        ({"project": "no-such-project"}, "project"),
        ({"model": "another-model"}, "reference_from"),
        ({"prompt_version": "prv_another"}, "reference_from"),
        ({"fields": ["input"], "current_from": (t2 - timedelta(seconds=20)).isoformat()}, "current_from"),
    ]
    for change, field in cases:
        r = world.post("/api/drift/reports", world.spec(**change))
        assert r.status_code in (400, 404), (change, r.text)
        assert r.json()["error"]["details"]["field"] == field, (change, r.text)
    # too few texts: the first 10 seconds of the current window hold 10 traces
    r = world.post("/api/drift/reports", world.spec(current_to=(t1 + timedelta(seconds=10)).isoformat()))
    assert r.status_code == 400 and r.json()["error"]["details"] == {
        "field": "current_from",
        "side": "current",
        "texts": 10,
        "minimum": 30,
    }
    # shape errors: FastAPI's, with the field's location
    for body in ({**world.spec(), "auc_threshold": 0.4}, {**world.spec(), "max_samples": 5}, {"current_from": "x"}):
        assert world.post("/api/drift/reports", body).status_code in (400, 422)


def test_a_field_without_enough_texts_is_marked_insufficient_unless_asked_for(world: World, backend: str) -> None:
    sqlite_only(backend)
    project = f"drift-inputs-{uuid.uuid4().hex[:6]}"
    key = project_key(world.live, project)
    rng = random.Random(5)
    send(world.live, key, [(billing(rng)[0], None) for _ in range(40)], world.t0)
    send(world.live, key, [(drones(rng)[0], None) for _ in range(40)], world.t1)
    r = world.post("/api/drift/reports", world.spec(), key)
    assert r.status_code == 201, r.text
    report = r.json()
    outputs = field_of(report, "output")
    assert outputs["status"] == "insufficient" and outputs["tests"] == [] and "no output texts" in outputs["detail"]
    assert field_of(report, "input")["status"] == "ok" and report["drift"] is True
    asked = world.post("/api/drift/reports", world.spec(fields=["input", "output"]), key)
    assert asked.status_code == 400 and asked.json()["error"]["details"]["field"] == "reference_from"


def test_roles_reads_latest_and_jobs(world: World, backend: str) -> None:
    sqlite_only(backend)
    assert world.post("/api/drift/reports", world.spec(), world.viewer).status_code == 403
    r = world.post("/api/drift/jobs", world.spec(fields=["input"], model="support-bot", prompt_version="prv_support"))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "drift.report"
    with world.live.client(world.viewer) as c:
        deadline = utcnow() + timedelta(minutes=4)
        while job["status"] not in ("succeeded", "failed", "cancelled") and utcnow() < deadline:
            time.sleep(0.5)
            job = c.get(f"/api/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        report_id = job["result"]["report_id"]
        report = c.get(f"/api/drift/reports/{report_id}").json()
        assert report["drift"] is True and [f["field"] for f in report["fields"]] == ["input"]
        assert report["spec"]["fields"] == ["input"] and report["spec"]["prompt_version"] == "prv_support"
        listed = c.get("/api/drift/reports").json()
        assert listed[0]["id"] == report_id and all(x["project_id"] == report["project_id"] for x in listed)
        assert c.get("/api/drift/reports/latest").json()["id"] == report_id
    with world.live.client(world.steady_key) as c:  # another project's report is not found
        assert c.get(f"/api/drift/reports/{report_id}").status_code == 404
        assert c.delete(f"/api/drift/reports/{report_id}").status_code == 404
        assert report_id not in [x["id"] for x in c.get("/api/drift/reports").json()]
        assert c.get("/api/drift/reports", params={"project": world.shifted}).status_code == 404
    with world.live.client(world.viewer) as c:
        assert c.delete(f"/api/drift/reports/{report_id}").status_code == 403
    with world.live.client(world.key) as c:
        assert c.delete(f"/api/drift/reports/{report_id}").status_code == 204
        assert c.get(f"/api/drift/reports/{report_id}").status_code == 404
        assert report_id not in [x["id"] for x in c.get("/api/drift/reports").json()]


def test_cli_runs_lists_and_shows(world: World, backend: str) -> None:
    sqlite_only(backend)
    env = {"PODIUM_URL": world.live.url, "PODIUM_API_KEY": world.key}
    done = run_cli(
        "drift",
        "run",
        "--reference-from",
        world.t0.isoformat(),
        "--reference-to",
        world.t1.isoformat(),
        "--current-from",
        world.t1.isoformat(),
        "--current-to",
        world.t2.isoformat(),
        "--field",
        "input",
        "--max-samples",
        "40",
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "DRIFT" in done.stdout and "embedding" in done.stdout and "more often now: " in done.stdout
    report_id = done.stdout.split(":")[0].strip()
    listed = run_cli("drift", "ls", "--json", env=env)
    assert report_id in [r["id"] for r in json.loads(listed.stdout)]
    shown = json.loads(run_cli("drift", "show", "latest", "--json", env=env).stdout)
    assert shown["id"] == report_id
    inputs = field_of(shown, "input")  # 80 texts a side, 40 drawn at random from each
    assert inputs["sampled"] and inputs["reference_used"] == inputs["current_used"] == 40
    assert inputs["reference_total"] == inputs["current_total"] == N
    bad = run_cli("drift", "run", "--reference-from", "2h", "--reference-to", "1h", "--current-from", "90m", env=env)
    assert bad.returncode != 0 and "overlaps" in bad.stderr


def test_trace_texts_from_each_payload_shape() -> None:
    """What a report reads of a stored input or output: the last user message of a chat request (text parts of a
    multimodal one), a completion's prompt, an answer's message or text, plain text, an artifact's preview."""
    from podium.tracing.texts import stored_to_text

    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]},
        ]
    }
    assert stored_to_text(json.dumps(chat), "input") == "second"
    assert stored_to_text(json.dumps({"model": "m", "prompt": "complete this"}), "input") == "complete this"
    assert stored_to_text(json.dumps({"input": ["one", "two"]}), "input") == "one\ntwo"
    assert stored_to_text("plain text, as an SDK sends it", "input") == "plain text, as an SDK sends it"
    assert stored_to_text('{"not json', "input") == '{"not json'
    answer = {"choices": [{"message": {"role": "assistant", "content": "  the answer "}}]}
    assert stored_to_text(json.dumps(answer), "output") == "the answer"
    assert stored_to_text(json.dumps({"choices": [{"text": "completed"}]}), "output") == "completed"
    assert stored_to_text(json.dumps("a JSON string"), "output") == "a JSON string"
    marker = json.dumps({"podium_artifact": "ab" * 32, "bytes": 90000, "preview": "the first characters"})
    assert stored_to_text(marker, "output") == "the first characters"
    assert stored_to_text(None, "input") == stored_to_text("", "output") == ""
