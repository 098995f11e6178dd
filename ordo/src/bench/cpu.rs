//! The CPU seconds each process of a benchmarked stack spent (utime + stime from
//! `/proc/<pid>/stat`), and the machine's load average: read at the start and at the end of
//! the measured run ([`Window`]), the same way for every system and every benchmark.

use ordo::instances::postgres::PrivateCluster;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The processes whose CPU time is reported, by row of the table.
pub(super) type Rows = Vec<(String, Vec<Counted>)>;

/// Which CPU time of a process counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counted {
    /// Its own utime + stime.
    Own(u32),
    /// Also the cutime + cstime of the children it reaped (PostgreSQL's exited backends).
    WithReaped(u32),
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds of each row, keyed by pid so a process present at only one end shows.
pub(super) type CpuSnapshot = Vec<(String, BTreeMap<u32, f64>)>;

pub(super) fn cpu_seconds(rows: &Rows) -> CpuSnapshot {
    let ticks = clock_ticks();
    rows.iter()
        .map(|(label, processes)| {
            let per_pid = processes
                .iter()
                .filter_map(|&counted| {
                    let (pid, reaped) = match counted {
                        Counted::Own(pid) => (pid, false),
                        Counted::WithReaped(pid) => (pid, true),
                    };
                    let f = stat_fields(pid)?;
                    // utime, stime, cutime, cstime are fields 14–17.
                    let mut t = f.get(11)? + f.get(12)?;
                    if reaped {
                        t += f.get(13)? + f.get(14)?;
                    }
                    Some((pid, t as f64 / ticks))
                })
                .collect();
            (label.clone(), per_pid)
        })
        .collect()
}

/// Live children of `parent`.
fn children(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1).copied()) == Some(parent as u64))
        .collect()
}

/// Processes whose command name (`/proc/<pid>/comm`) starts with `prefix` (a copied
/// `ordo-…` binary is still Ordo).
pub(super) fn processes_named(prefix: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .collect()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The measured run, open: the load average and the CPU time of its processes at its start.
pub(super) struct Window {
    load_start: String,
    cpu_before: CpuSnapshot,
    started: Instant,
}

impl Window {
    pub(super) fn open(processes: &Rows) -> Self {
        let load_start = loadavg();
        let cpu_before = cpu_seconds(processes);
        Self {
            load_start,
            cpu_before,
            started: Instant::now(),
        }
    }

    /// Closed with the processes as they are at the end (PostgreSQL has new backends).
    pub(super) fn close(self, processes: &Rows) -> Usage {
        let wall = self.started.elapsed();
        Usage {
            load_start: self.load_start,
            load_end: loadavg(),
            cpu_before: self.cpu_before,
            cpu_after: cpu_seconds(processes),
            wall,
        }
    }
}

/// The measured run's length and what the stack spent during it.
pub(super) struct Usage {
    pub(super) load_start: String,
    pub(super) load_end: String,
    cpu_before: CpuSnapshot,
    cpu_after: CpuSnapshot,
    pub(super) wall: Duration,
}

/// What the CPU seconds are divided by: `count` units of work, shown per `per` units.
pub(super) struct Work<'a> {
    pub(super) count: usize,
    pub(super) per: usize,
    pub(super) unit: &'a str,
}

/// The table of CPU seconds per row; `span` says where the run began and ended.
pub(super) fn print_cpu(usage: &Usage, span: &str, work: Work<'_>) {
    let Usage {
        cpu_before: before,
        cpu_after: after,
        wall,
        ..
    } = usage;
    println!(
        "CPU seconds during the measured run ({:.2} s {span}; utime + stime from /proc):",
        wall.as_secs_f64()
    );
    let per_work = format!("CPU s/{} {}", work.per, work.unit);
    let width = per_work.len().max(16);
    println!(
        "  {:<36} {:>6} {:>9} {per_work:>width$} {:>11}",
        "process", "procs", "CPU s", "% of 1 core"
    );
    let per = |seconds: f64| seconds / work.count.max(1) as f64 * work.per as f64;
    let mut total = 0.0;
    for ((label, start), (_, end)) in before.iter().zip(after) {
        // A process that started during the run counts from zero; one that ended is lost
        // (PostgreSQL's reaped backends are in the postmaster's count).
        // `+ 0.0`: an empty sum is -0.0.
        let seconds: f64 = end
            .iter()
            .map(|(pid, &t)| t - start.get(pid).copied().unwrap_or(0.0))
            .sum::<f64>()
            + 0.0;
        total += seconds;
        let pids = end.len();
        println!(
            "  {label:<36} {pids:>6} {seconds:>9.2} {:>width$.3} {:>10.0}%",
            per(seconds),
            seconds / wall.as_secs_f64() * 100.0,
        );
    }
    println!(
        "  {:<36} {:>6} {total:>9.2} {:>width$.3} {:>10.0}%",
        "total",
        "",
        per(total),
        total / wall.as_secs_f64() * 100.0,
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The row of a private PostgreSQL cluster: the postmaster with the children it reaped
/// (exited backends), and every live child.
pub(super) fn postgres_row(cluster: &PrivateCluster) -> (String, Vec<Counted>) {
    let processes = match cluster.postmaster_pid() {
        Ok(postmaster) => std::iter::once(Counted::WithReaped(postmaster))
            .chain(children(postmaster).into_iter().map(Counted::Own))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "PostgreSQL's CPU time not counted");
            Vec::new()
        }
    };
    ("PostgreSQL (postmaster + backends)".to_owned(), processes)
}

/// The process listening on TCP `port` (any address): the socket's inode from
/// `/proc/net/tcp` and `tcp6`, then the process that has it open.
pub(super) fn listening_on(port: u16) -> Option<u32> {
    const LISTEN: &str = "0A";
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|row| {
                // sl, local address (hex ip:port), remote address, state, …, inode (10th).
                let fields: Vec<&str> = row.split_whitespace().collect();
                let local_port = fields.get(1)?.rsplit(':').next()?;
                let listening = u16::from_str_radix(local_port, 16) == Ok(port)
                    && fields.get(3) == Some(&LISTEN);
                listening.then(|| fields.get(9).map(|inode| inode.to_string()))?
            })
        })?;
    let socket = format!("socket:[{inode}]");
    all_pids().into_iter().find(|pid| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == socket.as_str())
        })
    })
}
