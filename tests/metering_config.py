"""A license with one feature of every consumption model, for the metering tests."""

from __future__ import annotations

from typing import Any

FEATURES: list[dict[str, Any]] = [
    {"code": "clicks", "consumption_model": "boolean"},
    {"code": "beta", "consumption_model": "boolean", "enabled": False},
    {"code": "export", "floating_users": 2},
    {
        "code": "api",
        "feature_type": "consumption",
        "max_consumption": 10,
        "reset_consumption": True,
        "consumption_period": "monthly",
    },
    {
        "code": "storage",
        "feature_type": "consumption",
        "max_consumption": 10,
        "allow_overages": True,
        "max_overages": 5,
        "overage_unit_price": "0.5",
        "reset_consumption": True,
        "consumption_period": "monthly",
    },
    {
        "code": "logs",
        "feature_type": "consumption",
        "max_consumption": 10,
        "soft_limit": True,
        "overage_unit_price": "0.1",
        "reset_consumption": True,
        "consumption_period": "monthly",
    },
    {
        "code": "ai",
        "consumption_model": "credits",
        "credits_per_unit": "2.5",
        "reset_consumption": True,
        "consumption_period": "monthly",
    },
    {"code": "refunds", "feature_type": "consumption", "max_consumption": 10, "allow_negative_consumptions": True},
]


def metering_license(data: dict[str, Any]) -> None:
    lic = data["licenses"][0]
    lic["plan_credits"] = 20
    lic["credits_period"] = "monthly"
    lic["features"] = FEATURES
