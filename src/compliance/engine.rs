//! Evaluating assets and scoring them (API.md "Compliance": weights low 1,
//! medium 2, high 5, critical 10; an asset's score is the weighted share of
//! its passes among passes and fails, 100 with no applicable rule; the
//! organization's score is the mean of the asset scores, 100 with no
//! assets; retired and disposed assets are not evaluated).

use sentryops_events::cmdb::LifecycleState;
use sentryops_events::compliance::{AssetResults, ResultStatus, RuleResult};
use time::OffsetDateTime;

use super::{AssetSnapshot, OwnerSnapshot, RuleSet, Subject};

/// Whether a run evaluates an asset in `state`.
pub fn is_evaluated(state: LifecycleState) -> bool {
    !matches!(state, LifecycleState::Retired | LifecycleState::Disposed)
}

/// Rounds to two decimals, the precision scores are recorded with.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// An asset's score from its results, unrounded.
pub fn asset_score(results: &[RuleResult]) -> f64 {
    let (mut passed, mut judged) = (0u64, 0u64);
    for result in results {
        let weight = u64::from(result.severity.weight());
        match result.status {
            ResultStatus::Pass => {
                passed += weight;
                judged += weight;
            }
            ResultStatus::Fail => judged += weight,
            ResultStatus::NotApplicable => {}
        }
    }
    if judged == 0 {
        100.0
    } else {
        100.0 * passed as f64 / judged as f64
    }
}

/// The organization's score: the mean of `scores`, 100 without any.
pub fn org_score(scores_sum: f64, assets: u64) -> f64 {
    if assets == 0 {
        100.0
    } else {
        scores_sum / assets as f64
    }
}

/// Every rule of `rules` on `asset` at `now`, by rule id (so that a
/// reordered rule file changes nothing a run records), with the asset's
/// score rounded to two decimals.
pub fn evaluate_asset(
    rules: &RuleSet,
    asset: &AssetSnapshot,
    owner: Option<&OwnerSnapshot>,
    now: OffsetDateTime,
) -> AssetResults {
    let subject = Subject { asset, owner, now };
    let mut results: Vec<RuleResult> = rules
        .rules()
        .iter()
        .map(|rule| {
            let outcome = rule.evaluate(&subject);
            RuleResult {
                rule_id: rule.info().id.clone(),
                status: outcome.status,
                severity: rule.info().severity,
                evidence: outcome.evidence,
            }
        })
        .collect();
    results.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
    AssetResults {
        asset_id: asset.id,
        asset_name: asset.name.clone(),
        score: round2(asset_score(&results)),
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentryops_events::compliance::Severity;
    use serde_json::Value;

    fn result(status: ResultStatus, severity: Severity) -> RuleResult {
        RuleResult {
            rule_id: String::new(),
            status,
            severity,
            evidence: Value::Null,
        }
    }

    #[test]
    fn asset_score_weighs_passes_and_fails_and_leaves_out_not_applicable() {
        use ResultStatus::{Fail, NotApplicable, Pass};
        use Severity::{Critical, High, Low, Medium};
        // Passes: high 5 + low 1 = 6; fails: critical 10 + medium 2 = 12.
        let results = [
            result(Pass, High),
            result(Pass, Low),
            result(Fail, Critical),
            result(Fail, Medium),
            result(NotApplicable, Critical),
        ];
        assert_eq!(round2(asset_score(&results)), 33.33);
        assert_eq!(asset_score(&[result(Pass, Low), result(Fail, Low)]), 50.0);
        assert_eq!(asset_score(&[result(NotApplicable, High)]), 100.0);
        assert_eq!(asset_score(&[]), 100.0);
        assert_eq!(asset_score(&[result(Fail, Low)]), 0.0);
    }

    #[test]
    fn org_score_is_the_mean_and_100_without_assets() {
        assert_eq!(org_score(0.0, 0), 100.0);
        assert_eq!(org_score(100.0 + 50.0 + 0.0, 3), 50.0);
    }

    #[test]
    fn retired_and_disposed_assets_are_not_evaluated() {
        for state in LifecycleState::ALL {
            let skipped = matches!(state, LifecycleState::Retired | LifecycleState::Disposed);
            assert_eq!(is_evaluated(*state), !skipped, "{state:?}");
        }
    }
}
