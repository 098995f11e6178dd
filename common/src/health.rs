//! Readiness of the roles of a process. Each role that can stall without failing (a projector
//! whose consumer group gets no partitions, say) holds a [`RoleHealth`] and says when it is
//! not doing its job and why; the process's `/readyz` reports every role by name and answers
//! 503 while any is not ready.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The roles of one process and their readiness (cheap to clone, shared).
#[derive(Clone, Default)]
pub struct Readiness {
    roles: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

impl Readiness {
    /// A role named `name`, ready until it says otherwise.
    pub fn role(&self, name: &str) -> RoleHealth {
        self.lock().insert(name.to_owned(), None);
        RoleHealth {
            readiness: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Every role with `None` when ready, or why it is not.
    pub fn report(&self) -> BTreeMap<String, Option<String>> {
        self.lock().clone()
    }

    /// `Err` with each role that is not ready and its reason, for a 503's detail.
    pub fn check(&self) -> Result<(), String> {
        let failing: Vec<String> = self
            .lock()
            .iter()
            .filter_map(|(name, reason)| Some(format!("{name}: {}", reason.as_ref()?)))
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join("; "))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        self.roles.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One role's say in its process's readiness.
#[derive(Clone)]
pub struct RoleHealth {
    readiness: Readiness,
    name: String,
}

impl RoleHealth {
    /// A role of a process of its own (a test, a benchmark) that nobody asks.
    pub fn unobserved(name: &str) -> Self {
        Readiness::default().role(name)
    }

    pub fn ready(&self) {
        self.readiness.lock().insert(self.name.clone(), None);
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        self.readiness
            .lock()
            .insert(self.name.clone(), Some(reason.into()));
    }

    /// Why the role is not ready, if it is not.
    pub fn reason(&self) -> Option<String> {
        self.readiness.lock().get(&self.name).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_is_reported_and_one_not_ready_fails_the_check() {
        let readiness = Readiness::default();
        let projector = readiness.role("projector redis-views");
        let relay = readiness.role("relay");
        assert_eq!(readiness.check(), Ok(()));
        projector.not_ready("no partitions for 30 s");
        assert_eq!(
            readiness.check(),
            Err("projector redis-views: no partitions for 30 s".to_owned())
        );
        assert_eq!(readiness.report()["relay"], None);
        relay.ready();
        projector.ready();
        assert_eq!(readiness.check(), Ok(()));
        assert_eq!(projector.reason(), None);
    }
}
