"""`pii`: personal data by pattern, each candidate validated (cards by Luhn, IBANs by mod-97, IPs by parsing,
SSNs outside the never-issued ranges, keys by shape or entropy): the detectors of the dataset `pii` step, so
datasets, eval outputs and live traffic are screened alike. PERSON and LOCATION come from Microsoft Presidio
when its analyzer and a spaCy model are installed (optional; a clear error says what is missing)."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import Any, Literal

from pydantic import Field

from podium.data.steps import pii as detectors
from podium.guard.base import BOTH, Action, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register
from podium.guard.scanners.secrets import find_secrets

PatternEntity = Literal["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET"]
Entity = Literal["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET", "PERSON", "LOCATION"]
PATTERN_ENTITIES: tuple[PatternEntity, ...] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "US_SSN",
    "SECRET",
)
MODEL_ENTITIES = ("PERSON", "LOCATION")
SPACY_MODEL = "en_core_web_sm"


def _finders() -> dict[str, Any]:
    found: dict[str, Any] = dict(detectors.FINDERS)
    found["SECRET"] = find_secrets  # the step's key shapes plus "the key is ..." phrases
    return found


FINDERS = _finders()


class PiiSettings(ScannerSettings):
    """Settings of `pii`."""

    entities: list[Entity] = Field(default_factory=lambda: list[Entity](PATTERN_ENTITIES), min_length=1)
    action: Action = "redact"
    language: str = Field(default="en", min_length=2, max_length=8)  # Presidio's language for PERSON/LOCATION
    spacy_model: str = Field(default=SPACY_MODEL, min_length=1, max_length=100)
    min_score: float = Field(default=0.6, ge=0, le=1)  # Presidio findings under this score are dropped


_analyzers: dict[tuple[str, str], Any] = {}
_analyzer_lock = threading.Lock()


def presidio_analyzer(language: str, model: str) -> Any:
    """A Presidio `AnalyzerEngine` over an installed spaCy model (never downloading one); `ScannerError`
    saying what to install when either is missing."""
    key = (language, model)
    with _analyzer_lock:
        if key in _analyzers:
            return _analyzers[key]
        if importlib.util.find_spec("presidio_analyzer") is None:
            raise ScannerError(
                "PERSON and LOCATION need Microsoft Presidio: pip install presidio-analyzer, plus a spaCy model "
                f"({model}); or leave these entities out",
                "entities",
            )
        if importlib.util.find_spec(model) is None:
            raise ScannerError(
                f"PERSON and LOCATION need the spaCy model {model!r}, which is not installed (Presidio would try "
                "to download it, and this server may be offline): install the model's package, or set "
                "'spacy_model' to one that is installed, or leave these entities out",
                "spacy_model",
            )
        presidio = importlib.import_module("presidio_analyzer")
        nlp = importlib.import_module("presidio_analyzer.nlp_engine")
        engine = nlp.NlpEngineProvider(
            nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": language, "model_name": model}]}
        ).create_engine()
        analyzer = presidio.AnalyzerEngine(nlp_engine=engine, supported_languages=[language])
        _analyzers[key] = analyzer
        return analyzer


@register
class Pii(Scanner):
    """Emails, phone numbers, payment cards, IBANs, IP addresses, US SSNs and secrets by validated patterns;
    PERSON and LOCATION through Presidio when installed."""

    name = "pii"
    description = "personal data and secrets: validated patterns (Luhn, mod-97, ...), names/places via Presidio"
    stages = BOTH
    Settings = PiiSettings
    settings: PiiSettings

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        wanted = list(dict.fromkeys(self.settings.entities))
        self.finders = [(e, FINDERS[e]) for e in wanted if e in FINDERS]
        self.model_entities = [e for e in wanted if e in MODEL_ENTITIES]
        self.analyzer = (
            presidio_analyzer(self.settings.language, self.settings.spacy_model) if self.model_entities else None
        )

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        found: list[tuple[int, int, str, float]] = [
            (s, e, kind, 1.0) for kind, find in self.finders for s, e in find(text)
        ]
        if self.analyzer is not None:
            for r in self.analyzer.analyze(text=text, entities=self.model_entities, language=self.settings.language):
                if float(r.score) >= self.settings.min_score:
                    found.append((int(r.start), int(r.end), str(r.entity_type), float(r.score)))
        kept = detectors.resolve([(s, e, k) for s, e, k, _ in found])
        scores = {(s, e, k): sc for s, e, k, sc in found}
        return [self.finding(k, s, e, scores.get((s, e, k), 1.0)) for s, e, k in kept]
