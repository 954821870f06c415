"""The alerts domain's service interface: rules (`ruleset`: create, replace, delete, read, the history and the
notifications) and their evaluation (`evaluation`: states, events, queued notifications, test notifications).

Rules belong to the caller's project; viewers read, members write and evaluate. Other domains, the routes, the
pages and the CLI call these functions.
"""

from __future__ import annotations

from podium.alerts.evaluation import (
    Evaluation,
    RuleResult,
    evaluate,
    evaluate_all,
    on_queued,
    prune,
    run_evaluation,
    take_turn,
    test_rule,
)
from podium.alerts.ruleset import (
    MAX_LISTED,
    DeliveryInfo,
    EventInfo,
    RuleDetail,
    RuleInfo,
    StateInfo,
    create_rule,
    delete_rule,
    describe,
    get_rule,
    list_deliveries,
    list_events,
    list_rules,
    replace_rule,
)

__all__ = [
    "MAX_LISTED",
    "DeliveryInfo",
    "Evaluation",
    "EventInfo",
    "RuleDetail",
    "RuleInfo",
    "RuleResult",
    "StateInfo",
    "create_rule",
    "delete_rule",
    "describe",
    "evaluate",
    "evaluate_all",
    "get_rule",
    "list_deliveries",
    "list_events",
    "list_rules",
    "on_queued",
    "prune",
    "replace_rule",
    "run_evaluation",
    "take_turn",
    "test_rule",
]
