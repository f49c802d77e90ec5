"""Model profiles by document length: interpolation, shrinkage toward the class prior, the
uncertainty an unmeasured model carries, and a calibrated profile file winning for its model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.routing.profiles import (
    CALIBRATED_KIND,
    LengthPoint,
    Measurement,
    ModelProfile,
    fit_profiles,
    load_calibrated,
    save_calibrated,
    shrink,
)
from app.routing.qtype import QTypePrediction
from app.routing.router import model_profile, policy_features


def _profile() -> ModelProfile:
    return ModelProfile(
        "m",
        None,
        None,
        (
            LengthPoint(32_000, 0.05, 0.01, 500, {"comp": 0.20}),
            LengthPoint(128_000, -0.05, 0.03, 500, {"comp": 0.10}),
        ),
    )


def test_advantage_interpolates_in_log_length_and_stays_flat_outside() -> None:
    p = _profile()
    assert p.advantage_at(32_000) == pytest.approx(0.05)
    assert p.advantage_at(64_000) == pytest.approx(0.0)  # halfway in log2
    assert p.advantage_at(8_000) == pytest.approx(0.05)  # no slope extrapolated
    assert p.advantage_at(500_000) == pytest.approx(-0.05)
    assert p.task_advantage_at(64_000, "comp") == pytest.approx(0.15)
    assert p.task_advantage_at(64_000, "hallu") == pytest.approx(0.0)  # falls back to the overall value
    # Uncertainty moves it toward RAG: mean - penalty x sd.
    assert p.advantage_at(128_000, penalty=1.0) == pytest.approx(-0.08)


def test_shrink_weighs_measurement_against_prior() -> None:
    mean, sd = shrink(0.10, 0.05, 0.0, 0.05)
    assert mean == pytest.approx(0.05) and sd < 0.05
    assert shrink(0.10, 0.001, 0.0, 0.05)[0] == pytest.approx(0.10, abs=0.001)


def test_fit_profiles_gives_each_model_points_and_classes_a_prior() -> None:
    strong = [
        Measurement(30_000, "comp", (1,) * 40 + (0,) * 60),
        Measurement(100_000, "comp", (1,) * 60 + (0,) * 40),
    ]
    weak = [
        Measurement(30_000, "comp", (-1,) * 30 + (0,) * 70),
        Measurement(100_000, "comp", (-1,) * 50 + (0,) * 50),
    ]
    profiles, priors = fit_profiles({"a": strong, "b": weak}, {"a": 7.0, "b": 8.0})
    a, b = profiles["a"], profiles["b"]
    assert [p.tokens for p in a.points] == [30_000, 100_000]
    assert (
        a.advantage_at(100_000)
        > a.advantage_at(30_000)
        > 0
        > b.advantage_at(30_000)
        > b.advantage_at(100_000)
    )
    # Shrunk toward the class mean, not past it.
    assert 0.05 < a.advantage_at(30_000) < 0.40
    prior = priors["small"]
    assert prior.advantage_at(30_000) == pytest.approx((0.40 - 0.30) / 2)
    assert prior.sd_at(30_000) > 0.2  # two models far apart: an honest, wide prior


def test_unknown_model_gets_the_class_prior_with_its_uncertainty() -> None:
    p = model_profile("some-new-model.gguf", params_b=1.5)
    assert p.points, "the shipped profiles carry class priors"
    assert p.source.startswith("class prior")
    assert p.sd_at(32_000) > 0
    qt = QTypePrediction("comp", {"location": 0.0, "reasoning": 0.0, "comp": 1.0, "hallu": 0.0}, ())
    plain = policy_features(qt, p, doc_tokens=30_000, doc_digit_share=0.0, retrieval=None, cached=False)
    careful = policy_features(
        qt, p, doc_tokens=30_000, doc_digit_share=0.0, retrieval=None, cached=False, uncertainty_penalty=1.0
    )
    assert careful["model_lc_adv"] == pytest.approx(plain["model_lc_adv"] - p.sd_at(30_000))


def test_calibrated_file_wins_for_its_model_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "router_profile.json"
    cal = ModelProfile(
        "my-model", 1.5, None, (LengthPoint(4_000, 0.12, 0.04, 40),), "calibrated", "2026-12-06T07:00Z"
    )
    save_calibrated(path, cal, {"items": 40})
    assert json.loads(path.read_text())["kind"] == CALIBRATED_KIND
    assert load_calibrated(path) == cal
    got = model_profile("my-model", calibrated=path)
    assert got.source == "calibrated" and got.advantage_at(4_000) == pytest.approx(0.12)
    assert model_profile("other-model", calibrated=path).source != "calibrated"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_calibrated(path)


def test_profile_caption_says_where_the_profile_came_from() -> None:
    from app.routing.profiles import profile_caption

    cal = ModelProfile(
        "m", None, None, (LengthPoint(4_000, 0.1, 0.05, 40),), "calibrated", "2026-12-06T07:00:00"
    )
    assert (
        profile_caption(cal)
        == "Router profile: calibrated for this model on 2026-12-06 07:00 UTC (lengths 4k)"
    )
    caption = profile_caption(model_profile("never-seen-model"))
    assert caption.startswith(
        "Router profile: not measured for this model; the class prior (unknown, 13 models"
    )


def test_catalog_models_get_their_size_class_and_a_calibrated_profile_keeps_it(tmp_path: Path) -> None:
    from app.catalog import catalog_params_b

    assert catalog_params_b("qwen2.5-coder-1.5b") == 1.5
    assert catalog_params_b("not-in-the-catalog") is None
    prior = model_profile("qwen2.5-coder-1.5b", catalog_params_b("qwen2.5-coder-1.5b"))
    assert prior.params_b == 1.5 and "small" in prior.source
    # A profile written without a size (older longqa calibrate) takes the catalog's.
    path = tmp_path / "router_profile.json"
    save_calibrated(
        path,
        ModelProfile(
            "qwen2.5-coder-1.5b", None, None, (LengthPoint(4_000, 0.03, 0.05, 5),), "calibrated", "t"
        ),
        {},
    )
    got = model_profile("qwen2.5-coder-1.5b", 1.5, calibrated=path)
    assert got.source == "calibrated" and got.params_b == 1.5


def test_a_calibrated_model_is_routed_by_its_advantage_on_the_question_type() -> None:
    """A profile ``longqa calibrate`` measured per task type: the policy reads the advantage of
    the question's type (weighed by the classifier's belief), so a deficit measured on
    unanswerable questions does not send lookups to RAG. Published and prior profiles keep the
    mean over types, as the policy was trained."""
    by_task = {"hallu": -0.28, "comp": -0.07, "location": 0.02, "reasoning": 0.02}
    point = LengthPoint(3_700, -0.076, 0.04, 92, by_task)
    cal = ModelProfile("m", 1.5, None, (point,), "calibrated", "2026-12-07T04:05:36")
    published = ModelProfile("m", 1.5, None, (point,), "published LaRA answers")

    def feats(profile: ModelProfile, probs: dict[str, float]) -> dict[str, float]:
        qt = QTypePrediction(max(probs, key=probs.__getitem__), probs, ())
        return policy_features(
            qt, profile, doc_tokens=3_700, doc_digit_share=0.0, retrieval=None, cached=False
        )

    lookup = {"location": 0.9, "reasoning": 0.1, "comp": 0.0, "hallu": 0.0}
    unanswerable = {"location": 0.0, "reasoning": 0.0, "comp": 0.2, "hallu": 0.8}
    assert feats(cal, lookup)["model_lc_adv"] == pytest.approx(0.02)
    assert feats(cal, unanswerable)["model_lc_adv"] == pytest.approx(0.2 * -0.07 + 0.8 * -0.28)
    assert feats(cal, lookup)["q_location_x_adv"] == pytest.approx(0.9 * 0.02)
    for probs in (lookup, unanswerable):
        f = feats(published, probs)
        assert f["model_lc_adv"] == pytest.approx(-0.076)
        assert f["q_hallu_x_adv"] == pytest.approx(probs["hallu"] * -0.076)
        assert f["q_hallu_x_tadv"] == pytest.approx(probs["hallu"] * -0.28)
