//! A linearizability checker for a single register (Wing & Gong's search with Lowe's
//! memoization, as in Knossos and Porcupine).
//!
//! Every write puts a value never written before, so a value names the write that put it.
//! Compare-and-set is "set to `new` if the register holds `expected`" (clients turn that
//! into an update with the resourceVersion they read `expected` at). An operation whose
//! outcome is unknown (a timeout, a lost answer) may have taken effect at any point after
//! it was invoked, or never.

use std::collections::HashSet;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Read,
    Write(String),
    Cas { expected: String, new: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read's value (`None`: the register does not exist), or a write that succeeded.
    Ok(Option<String>),
    /// A compare-and-set refused because the register did not hold `expected`.
    CasFailed,
    /// No answer, or an error after which the operation may or may not have been applied.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub call: Call,
    pub outcome: Outcome,
    pub invoked: Instant,
    /// `None` for an unknown outcome: it may take effect any time after `invoked`.
    pub returned: Option<Instant>,
}

/// What the register holds after `op` on `state`, if `op` may happen on `state` at all.
fn step(state: &Option<String>, op: &Op) -> Option<Option<String>> {
    match (&op.call, &op.outcome) {
        (Call::Read, Outcome::Ok(seen)) => (seen == state).then(|| state.clone()),
        (Call::Read, _) => Some(state.clone()),
        (Call::Write(v), Outcome::Ok(_) | Outcome::Unknown) => Some(Some(v.clone())),
        (Call::Cas { expected, new }, Outcome::Ok(_) | Outcome::Unknown) => {
            (state.as_deref() == Some(expected.as_str())).then(|| Some(new.clone()))
        }
        (Call::Cas { expected, .. }, Outcome::CasFailed) => {
            (state.as_deref() != Some(expected.as_str())).then(|| state.clone())
        }
        (Call::Write(_), Outcome::CasFailed) => None,
    }
}

/// Whether some total order of `history`, respecting real time (an operation that returned
/// before another was invoked comes first), explains every outcome, starting from `initial`.
pub fn is_linearizable(history: &[Op], initial: Option<String>) -> bool {
    // "Never took effect" is always a possible outcome of an unknown operation, so an order
    // found without some of them is an order for the whole history. Unknown writes whose
    // value nobody ever saw are left out first: that search is quick. Only if it finds no
    // order is the whole history searched, where each unknown one may or may not count.
    let observed: HashSet<&str> = history
        .iter()
        .filter_map(|o| match (&o.call, &o.outcome) {
            (Call::Read, Outcome::Ok(Some(v))) => Some(v.as_str()),
            (Call::Cas { expected, .. }, _) => Some(expected.as_str()),
            _ => None,
        })
        .collect();
    let certain = |o: &&Op| o.outcome != Outcome::Unknown;
    let seen_unknown = |o: &&Op| written(o).is_some_and(|v| observed.contains(v));
    let reduced: Vec<&Op> = history
        .iter()
        .filter(|o| certain(o) || seen_unknown(o))
        .collect();
    let whole: Vec<&Op> = history
        .iter()
        .filter(|o| certain(o) || written(o).is_some())
        .collect();
    [reduced, whole].iter().any(|ops| {
        search(
            ops,
            &mut vec![false; ops.len()],
            initial.clone(),
            &mut HashSet::new(),
        )
    })
}

/// The value a write or compare-and-set puts.
fn written(op: &Op) -> Option<&str> {
    match &op.call {
        Call::Write(v) | Call::Cas { new: v, .. } => Some(v.as_str()),
        Call::Read => None,
    }
}

/// The memo key: which operations are placed (as bits), and the register's value.
type Placed = (Vec<u64>, Option<String>);

fn key(done: &[bool], state: &Option<String>) -> Placed {
    let mut bits = vec![0u64; done.len().div_ceil(64)];
    for (i, _) in done.iter().enumerate().filter(|(_, d)| **d) {
        bits[i / 64] |= 1 << (i % 64);
    }
    (bits, state.clone())
}

fn search(
    ops: &[&Op],
    done: &mut Vec<bool>,
    state: Option<String>,
    seen: &mut HashSet<Placed>,
) -> bool {
    // Finished once every operation with a known outcome is placed; the unknown ones left
    // over never took effect.
    if ops
        .iter()
        .zip(done.iter())
        .all(|(o, d)| *d || o.returned.is_none())
    {
        return true;
    }
    if !seen.insert(key(done, &state)) {
        return false;
    }
    // The next operation must have been invoked before every pending one returned.
    let horizon = ops
        .iter()
        .zip(done.iter())
        .filter(|(_, d)| !**d)
        .filter_map(|(o, _)| o.returned)
        .min();
    for i in 0..ops.len() {
        if done[i] || horizon.is_some_and(|h| ops[i].invoked > h) {
            continue;
        }
        if let Some(next) = step(&state, ops[i]) {
            done[i] = true;
            if search(ops, done, next, seen) {
                return true;
            }
            done[i] = false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An operation over [start, end] in milliseconds; `end: None` for an unknown outcome.
    fn op(call: Call, outcome: Outcome, start: u64, end: Option<u64>) -> Op {
        let t0 = *EPOCH;
        Op {
            call,
            outcome,
            invoked: t0 + Duration::from_millis(start),
            returned: end.map(|e| t0 + Duration::from_millis(e)),
        }
    }

    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    fn w(v: &str) -> Call {
        Call::Write(v.into())
    }
    fn ok(v: Option<&str>) -> Outcome {
        Outcome::Ok(v.map(str::to_string))
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let history = [
            op(w("a"), ok(None), 0, Some(10)),
            op(w("b"), ok(None), 5, Some(20)),
            op(Call::Read, ok(Some("a")), 15, Some(25)),
        ];
        assert!(
            is_linearizable(&history, None),
            "b then a, both before the read"
        );
    }

    #[test]
    fn a_stale_read_is_caught() {
        let history = [
            op(w("a"), ok(None), 0, Some(10)),
            op(w("b"), ok(None), 20, Some(30)),
            op(Call::Read, ok(Some("a")), 40, Some(50)),
        ];
        assert!(
            !is_linearizable(&history, None),
            "the read came after b was acknowledged"
        );
    }

    #[test]
    fn an_unknown_outcome_may_or_may_not_have_happened() {
        let applied = [
            op(w("a"), ok(None), 0, Some(10)),
            op(w("lost?"), Outcome::Unknown, 20, None),
            op(Call::Read, ok(Some("lost?")), 100, Some(110)),
        ];
        assert!(is_linearizable(&applied, None));
        let not_applied = [
            op(w("a"), ok(None), 0, Some(10)),
            op(w("lost?"), Outcome::Unknown, 20, None),
            op(Call::Read, ok(Some("a")), 100, Some(110)),
        ];
        assert!(is_linearizable(&not_applied, None));
        // But it cannot take effect before it was invoked.
        let too_early = [
            op(w("later"), Outcome::Unknown, 50, None),
            op(Call::Read, ok(Some("later")), 0, Some(10)),
        ];
        assert!(!is_linearizable(&too_early, None));
    }

    #[test]
    fn an_unseen_unknown_write_may_explain_a_failed_compare_and_set() {
        let cas = |e: &str, n: &str| Call::Cas {
            expected: e.into(),
            new: n.into(),
        };
        let history = [
            op(w("a"), ok(None), 0, Some(10)),
            op(w("unseen"), Outcome::Unknown, 20, None),
            op(cas("a", "b"), Outcome::CasFailed, 40, Some(50)),
        ];
        assert!(
            is_linearizable(&history, None),
            "only the unknown write explains the failure"
        );
    }

    #[test]
    fn compare_and_set_must_agree_with_the_value() {
        let cas = |e: &str, n: &str| Call::Cas {
            expected: e.into(),
            new: n.into(),
        };
        let good = [
            op(w("a"), ok(None), 0, Some(10)),
            op(cas("a", "b"), ok(None), 20, Some(30)),
            op(cas("a", "c"), Outcome::CasFailed, 40, Some(50)),
            op(Call::Read, ok(Some("b")), 60, Some(70)),
        ];
        assert!(is_linearizable(&good, None));
        let two_winners = [
            op(w("a"), ok(None), 0, Some(10)),
            op(cas("a", "b"), ok(None), 20, Some(30)),
            op(cas("a", "c"), ok(None), 40, Some(50)),
        ];
        assert!(
            !is_linearizable(&two_winners, None),
            "a second CAS from a cannot succeed"
        );
    }
}
