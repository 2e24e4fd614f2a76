//! Kubernetes-convention status conditions.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition, as in `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in CamelCase, e.g. `Ready`, `Progressing`, `Degraded`.
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable reason in CamelCase.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Timestamp,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl Condition {
    /// A new condition stamped at `now`.
    pub fn new(
        r#type: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        now: Timestamp,
        generation: Option<i64>,
    ) -> Self {
        Self {
            r#type: r#type.to_string(),
            status: if status {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: generation,
        }
    }
}

/// Insert or replace `new` in `conditions`, keeping `lastTransitionTime` when the status
/// did not change (so a steady condition does not churn).
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.r#type == new.r#type) {
        Some(old) => {
            let since = if old.status == new.status {
                old.last_transition_time
            } else {
                new.last_transition_time
            };
            *old = Condition {
                last_transition_time: since,
                ..new
            };
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_condition_keeps_transition_time() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let mut cs = vec![];
        set_condition(
            &mut cs,
            Condition::new("Ready", true, "Ok", "", t0, Some(1)),
        );
        set_condition(
            &mut cs,
            Condition::new("Ready", true, "Ok", "again", t1, Some(2)),
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, t0);
        assert_eq!(cs[0].message, "again");
        assert_eq!(cs[0].observed_generation, Some(2));
        set_condition(
            &mut cs,
            Condition::new("Ready", false, "Bad", "", t1, Some(2)),
        );
        assert_eq!(cs[0].last_transition_time, t1);
    }
}
