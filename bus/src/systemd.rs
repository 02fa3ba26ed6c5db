//! systemd readiness for `Type=notify` units (deploy/vault-node.service).
//!
//! The node tells its service manager, over the datagram socket named by
//! `NOTIFY_SOCKET`:
//!
//! - `READY=1` once it knows a leader (SPEC §10: a node is ready when the
//!   cluster it belongs to can serve), with a `STATUS=` line;
//! - a new `STATUS=` line at each leader change (`systemctl status` shows
//!   it);
//! - `WATCHDOG=1` every half `WATCHDOG_USEC` when the unit sets
//!   `WatchdogSec=`: the pings come from the node's runtime, so a runtime
//!   that stops turning is restarted;
//! - `STOPPING=1` when it begins to shut down.
//!
//! Without `NOTIFY_SOCKET` (run by hand, in tests, in a container) nothing
//! is sent and no task is started. A failed send is logged and never stops
//! the node.

use consensus::node::{Node, NodeStatus};
use consensus::raft::NodeId;
use sd_notify::NotifyState;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Starts the notifier for `node` if a service manager listens; see the
/// module documentation.
pub(crate) fn spawn(node: &Node) -> Option<JoinHandle<()>> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let watchdog = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    if let Some(interval) = watchdog {
        tracing::info!(
            "systemd watchdog enabled: pinging every {} ms",
            interval.as_millis()
        );
    }
    Some(tokio::spawn(run(node.watch_status(), watchdog)))
}

/// Tells the service manager the node is stopping (no-op without one).
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping the watchdog: half its timeout, as sd_watchdog_enabled(3)
/// recommends. None unless `WATCHDOG_USEC` is a positive number and
/// `WATCHDOG_PID`, when set, names this process (a variable inherited from
/// a parent is not ours).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|usec| *usec > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// The `STATUS=` text for `status`.
fn status_line(status: &NodeStatus) -> String {
    match status.leader {
        Some(leader) if leader == status.id => {
            format!(
                "leader of term {}; commit index {}",
                status.term, status.commit_index
            )
        }
        Some(leader) => format!(
            "{} in term {}; leader is {leader}; commit index {}",
            status.role, status.term, status.commit_index
        ),
        None => format!("{} in term {}; no leader known", status.role, status.term),
    }
}

async fn run(mut status: tokio::sync::watch::Receiver<NodeStatus>, watchdog: Option<Duration>) {
    let mut ticker = watchdog.map(tokio::time::interval);
    let mut ready = false;
    // The leader last shown in STATUS=; None before the first line.
    let mut shown: Option<Option<NodeId>> = None;
    loop {
        let current = status.borrow_and_update().clone();
        if shown != Some(current.leader) {
            let line = status_line(&current);
            if !ready && current.leader.is_some() {
                ready = true;
                tracing::info!("Node {} is ready: {line}", current.id);
                send(&[NotifyState::Ready, NotifyState::Status(&line)]);
            } else {
                send(&[NotifyState::Status(&line)]);
            }
            shown = Some(current.leader);
        }
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    return; // the node stopped
                }
            }
            () = tick(&mut ticker) => send(&[NotifyState::Watchdog]),
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends one notification without ever blocking: sd-notify's own `notify`
/// sends on a blocking socket, and a service manager (or test) that stops
/// reading would then freeze a runtime thread once the socket's small
/// queue is full. A notification that does not fit is dropped (the next
/// STATUS= or WATCHDOG=1 follows soon) and logged at debug.
fn send(states: &[NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message: String = states.iter().map(|state| format!("{state}\n")).collect();
    match send_nonblocking(&path, message.as_bytes()) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::debug!("service manager socket full; notification dropped");
        }
        Err(error) => tracing::warn!("cannot notify the service manager: {error}"),
    }
}

/// `NOTIFY_SOCKET` is a path, or an abstract socket name after `@`.
fn send_nonblocking(path: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let bytes = path.as_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &address)?
        }
        None => socket.send_to(message, path)?,
    };
    if sent != message.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "notification cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_half_its_timeout_and_only_for_this_process() {
        let half = Some(Duration::from_secs(5));
        assert_eq!(watchdog_interval(Some("10000000"), None, 42), half);
        assert_eq!(watchdog_interval(Some("10000000"), Some("42"), 42), half);
        assert_eq!(watchdog_interval(Some("10000000"), Some("41"), 42), None);
        assert_eq!(watchdog_interval(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 42), None);
        assert_eq!(watchdog_interval(None, Some("42"), 42), None);
    }

    #[test]
    fn the_status_line_names_the_leader() {
        let follower = NodeStatus {
            id: NodeId(2),
            role: "follower".into(),
            term: 3,
            leader: Some(NodeId(1)),
            commit_index: 9,
            ..NodeStatus::default()
        };
        assert_eq!(
            status_line(&follower),
            "follower in term 3; leader is node1; commit index 9"
        );
        let leader = NodeStatus {
            leader: Some(NodeId(2)),
            role: "leader".into(),
            ..follower.clone()
        };
        assert_eq!(status_line(&leader), "leader of term 3; commit index 9");
        let lost = NodeStatus {
            leader: None,
            role: "pre-candidate".into(),
            ..follower
        };
        assert_eq!(
            status_line(&lost),
            "pre-candidate in term 3; no leader known"
        );
    }
}
