//! `imagePullPolicy`: whether the node pulls an OCI image before starting a container.
//! Pure; kubelet's rules.

/// A container's pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// What to do about the image now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    Pull,
    /// The node has it and need not ask the registry: "already present on machine".
    UsePresent,
    /// `Never`, and the node does not have it: `ErrImageNeverPull`.
    NeverPull,
}

impl PullPolicy {
    /// The policy as written, or Kubernetes' default when it is not: `Always` for an image
    /// tagged `:latest` or not tagged at all, else `IfNotPresent` (the API server fills
    /// this in; a pod from elsewhere may lack it).
    pub fn of(policy: Option<&str>, image: &str) -> PullPolicy {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let name = image.split('@').next().unwrap_or(image);
                let last = name.rsplit('/').next().unwrap_or(name);
                let digest = image.contains('@');
                match last.split_once(':') {
                    Some((_, "latest")) => PullPolicy::Always,
                    None if !digest => PullPolicy::Always,
                    _ => PullPolicy::IfNotPresent,
                }
            }
        }
    }

    pub fn decide(self, present: bool) -> PullDecision {
        match (self, present) {
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => PullDecision::Pull,
            (PullPolicy::IfNotPresent | PullPolicy::Never, true) => PullDecision::UsePresent,
            (PullPolicy::Never, false) => PullDecision::NeverPull,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_tag() {
        let cases = [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("127.0.0.1:5000/busybox", PullPolicy::Always),
            ("127.0.0.1:5000/busybox:test", PullPolicy::IfNotPresent),
            ("busybox@sha256:00", PullPolicy::IfNotPresent),
        ];
        for (image, policy) in cases {
            assert_eq!(PullPolicy::of(None, image), policy, "{image}");
        }
        assert_eq!(PullPolicy::of(Some("Never"), "busybox"), PullPolicy::Never);
    }

    #[test]
    fn decisions() {
        use PullDecision::*;
        let table = [
            (PullPolicy::Always, true, Pull),
            (PullPolicy::Always, false, Pull),
            (PullPolicy::IfNotPresent, true, UsePresent),
            (PullPolicy::IfNotPresent, false, Pull),
            (PullPolicy::Never, true, UsePresent),
            (PullPolicy::Never, false, NeverPull),
        ];
        for (policy, present, decision) in table {
            assert_eq!(policy.decide(present), decision, "{policy:?} {present}");
        }
    }
}
