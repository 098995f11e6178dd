//! What fault tests ask of a [`RelayProcess`] beyond starting and killing it.

use super::RelayProcess;

impl RelayProcess {
    /// The process id of the relay.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics if the relay process exited: a fault test expects it to recover by itself.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the relay process exited ({status}) instead of recovering");
        }
    }
}
