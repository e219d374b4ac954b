//! The filters and scores of kube-scheduler's default profile, one module per plugin. Each
//! filter is a pure function `(pod, node, prepared state) -> Fit`; each score gives a raw
//! number per node that [`normalize`] (or the plugin's own rule) brings to 0..=100.

pub mod node_affinity;
pub mod owner_spread;
pub mod pod_affinity;
pub mod ports;
pub mod resources_fit;
pub mod taints;
pub mod topology_spread;

/// The best a normalized score can be (`framework.MaxNodeScore`).
pub const MAX_SCORE: i64 = 100;

/// Why a node does not fit a pod (a filter's `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfit {
    /// Kubernetes' reason strings, counted per node in `FailedScheduling` messages.
    pub reasons: Vec<String>,
    /// `Unschedulable` (evicting pods could help) rather than
    /// `UnschedulableAndUnresolvable`: decides the preemption part of the message.
    pub resolvable: bool,
}

impl Unfit {
    pub fn resolvable(reason: impl Into<String>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            resolvable: true,
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

pub type Fit = Result<(), Unfit>;

/// `DefaultNormalizeScore`: scales raw scores so the highest is 100 (or, `reverse`d, so the
/// highest raw score gets 0 and a raw 0 gets 100).
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        let scaled = if max == 0 { 0 } else { *s * MAX_SCORE / max };
        *s = if reverse { MAX_SCORE - scaled } else { scaled };
    }
}

/// Min-max scaling to 0..=100, for raw scores that may be negative (inter-pod affinity).
pub fn normalize_min_max(scores: &mut [i64]) {
    let (min, max) = (
        scores.iter().copied().min().unwrap_or(0),
        scores.iter().copied().max().unwrap_or(0),
    );
    for s in scores.iter_mut() {
        *s = if max == min {
            0
        } else {
            (*s - min) * MAX_SCORE / (max - min)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let cases: &[(&[i64], bool, &[i64])] = &[
            (&[0, 5, 10], false, &[0, 50, 100]),
            (&[0, 5, 10], true, &[100, 50, 0]),
            (&[0, 0], false, &[0, 0]),
            (&[0, 0], true, &[100, 100]),
        ];
        for (raw, reverse, want) in cases {
            let mut s = raw.to_vec();
            normalize(&mut s, *reverse);
            assert_eq!(&s, want, "{raw:?} reverse={reverse}");
        }
        let mut s = vec![-10, 0, 10];
        normalize_min_max(&mut s);
        assert_eq!(s, [0, 50, 100]);
        let mut s = vec![3, 3];
        normalize_min_max(&mut s);
        assert_eq!(s, [0, 0]);
    }
}
