//! Private instances on loopback ports of their own, which a caller may stop, kill and
//! restart without touching the shared local stack: a PostgreSQL cluster ([`postgres`]), a
//! Redis without persistence ([`redis`]), a Nisshi broker with memory storage ([`broker`])
//! and `ordo` processes ([`process`]). Everything here blocks (process spawns, `pg_ctl`);
//! async callers wrap it in `block_in_place` or `spawn_blocking`.

pub mod broker;
pub mod postgres;
pub mod process;
pub mod redis;

use anyhow::{bail, Context};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`...) to `pid` with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed: {status}");
    }
    Ok(())
}

/// A program found on `PATH`, else in one of `fallbacks`.
pub fn find_program(name: &str, fallbacks: &[PathBuf]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain(fallbacks.iter().cloned())
        .find(|candidate| candidate.is_file())
}

/// Waits until 127.0.0.1:`port` accepts connections, failing early if `child` exits.
pub fn wait_listening(
    what: &str,
    port: u16,
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} on port {port} exited at start: {status}");
        }
        if Instant::now() >= deadline {
            bail!("{what} not listening on 127.0.0.1:{port} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Kills `child` with SIGKILL (which also ends a stopped process) and reaps it.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
