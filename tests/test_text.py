"""The plain-text diagnosis: gap classes per traffic source and integration, and each incident's suspects."""

from __future__ import annotations

from cfanalytics.text import diagnosis_text

TOKEN = "EAAG" + "q" * 40


def _doc() -> dict:
    change = {
        "changed_at": "2026-11-18T21:04:00Z",
        "author": "ben@x.test",
        "entity_type": "campaign",
        "entity_id": "k1",
        "entity_name": "Camp 1",
        "action": "updated",
    }
    suspect = {
        **change,
        "rank": 1,
        "minutes_before": 60.1,
        "family": "volume",
        "direction": "up",
        "explains": True,
        "own_entity": False,
        "fields": [{"field": "daily_budget", "old": "200", "new": "800"}],
        "postbacks_per_hour_before": 1.33,
        "postbacks_per_hour_after": 31.0,
        "error_rate_before": 0.0,
        "error_rate_after": 0.57,
        "top_error_kind_before": None,
        "top_error_kind_after": "rate_limit",
        "volume_changed": True,
        "error_mix_changed": True,
    }
    token_edit = {
        **suspect,
        "rank": 2,
        "entity_type": "integration",
        "entity_id": "i1",
        "entity_name": "TikTok",
        "family": "credential",
        "direction": None,
        "explains": False,
        "minutes_before": 120.0,
        "fields": [{"field": "url", "old": None, "new": f"https://x/?access_token={TOKEN}"}],
        "volume_changed": False,
        "error_mix_changed": False,
    }
    gaps = {
        "conversions": 10,
        "posted_ok": 5,
        "posted_failed": 1,
        "not_posted": 4,
        "pending": 0,
        "orphan_postbacks": 0,
        "ct_mismatch": 0,
        "duplicate_conversions": 0,
        "unknown_click": 0,
        "unknown_click_malformed": 0,
        "by_traffic_source": [
            {
                "traffic_source_id": "t9",
                "traffic_source_name": "NativeX",
                "conversions": 4,
                "posted_ok": 0,
                "posted_failed": 0,
                "not_posted": 4,
                "pending": 0,
            },
            {
                "traffic_source_id": "t1",
                "traffic_source_name": "TikTok Ads",
                "conversions": 6,
                "posted_ok": 5,
                "posted_failed": 1,
                "not_posted": 0,
                "pending": 0,
            },
        ],
        "by_integration": [
            {
                "integration_id": None,
                "integration_name": None,
                "conversions": 4,
                "posted_ok": 0,
                "posted_failed": 0,
                "not_posted": 4,
                "pending": 0,
            },
        ],
    }
    incident = {
        "incident_id": "inc-0123456789abcdef",
        "scope": "integration",
        "id": "i1",
        "name": "TikTok",
        "start": "2026-11-18T22:04:07Z",
        "end": "2026-11-18T23:56:26Z",
        "error_rate_before": 0.07,
        "postbacks": 72,
        "errors": 53,
        "top_error_kind": "rate_limit",
        "suspects": [suspect, token_edit],
        "suspected_change": change,
        "resolved_by": {
            **change,
            "author": "mia@x.test",
            "changed_at": "2026-11-19T00:10:00Z",
            "error_rate_after": 0.0,
        },
    }
    postbacks = {
        "total": 0,
        "errors": 0,
        "unattributed": 0,
        "by_traffic_source": [],
        "by_integration": [],
        "by_error_kind": [],
        "top_signatures": [],
    }
    return {
        "window": {},
        "timezone": "UTC",
        "postbacks": postbacks,
        "gaps": gaps,
        "incidents": [incident],
        "activity_log_until": None,
    }


def test_gap_classes_per_source_and_integration_name_a_source_that_never_posts():
    lines = diagnosis_text(_doc()).splitlines()
    at = lines.index("Conversions by traffic source:")
    assert lines[at + 1].split() == [
        "traffic",
        "source",
        "conversions",
        "posted",
        "ok",
        "failed",
        "not",
        "posted",
        "pending",
    ]
    assert lines[at + 2].split() == ["NativeX", "(t9)", "4", "0", "0", "4", "0"]
    assert lines[at + 3].split() == ["TikTok", "Ads", "(t1)", "6", "5", "1", "0", "0"]
    at = lines.index("Conversions by integration:")
    assert lines[at + 2].split() == ["(no", "integration)", "4", "0", "0", "4", "0"]


def test_each_incident_shows_its_suspected_change_fix_and_ranked_suspects_redacted():
    text = diagnosis_text(_doc())
    assert "      suspected change: 2026-11-18T21:04:00Z ben@x.test updated campaign Camp 1 (k1)" in text
    assert (
        "      resolved by: 2026-11-19T00:10:00Z mia@x.test updated campaign Camp 1 (k1) (error rate after: 0%)" in text
    )
    assert (
        "        1. 60.1 min before: 2026-11-18T21:04:00Z ben@x.test updated campaign Camp 1 (k1) "
        "(volume up change; explains it)\n"
        "           daily_budget 200 → 800; after it: volume 1.33 → 31/h, error rate 0% → 57%, mostly rate_limit after"
    ) in text
    assert "        2. 120 min before:" in text
    assert "(credential change; does not explain it)" in text
    assert "url ∅ → https://x/?access_token=" in text
    assert TOKEN not in text
