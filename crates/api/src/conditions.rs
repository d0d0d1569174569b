//! Status conditions (`metav1.Condition`) as the controller and weftd both write them:
//! the transition time changes only when the status does (API conventions:
//! `lastTransitionTime` is "the last time the condition transitioned from one status to
//! another"), and writes are skipped when nothing but that time would change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition, keeping the previous transition time when the status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(
            || Time(Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: None,
    }
}

/// Whether `wanted` says something `previous` does not (transition times aside).
pub fn conditions_differ(previous: &[Condition], wanted: &[Condition]) -> bool {
    wanted.iter().any(|w| {
        !previous.iter().any(|p| {
            p.type_ == w.type_
                && p.status == w.status
                && p.reason == w.reason
                && p.message == w.message
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_and_compare_without_it() {
        let old = condition(&[], "Allocated", false, "RangeExhausted", "full".into());
        let same = condition(
            std::slice::from_ref(&old),
            "Allocated",
            false,
            "RangeExhausted",
            "full".into(),
        );
        assert_eq!(same.last_transition_time, old.last_transition_time);
        assert!(!conditions_differ(
            std::slice::from_ref(&old),
            std::slice::from_ref(&same)
        ));
        let now_ok = condition(
            std::slice::from_ref(&old),
            "Allocated",
            true,
            "Allocated",
            "x".into(),
        );
        assert_ne!(now_ok.last_transition_time, old.last_transition_time);
        assert!(conditions_differ(std::slice::from_ref(&old), &[now_ok]));
    }
}
