//! Faults finer than a partition, made with nftables inside a host's
//! namespace: drop what a host receives from some peers (an asymmetric
//! partition: it still sends, and still hears everyone else), or drop a
//! random share of everything it receives. The kernel here has no netem,
//! so loss is an `input` rule (`numgen random mod 100 < P drop`), not a
//! queueing discipline.
//!
//! A filter sees what the kernel hands up, and a batch sent with UDP
//! segmentation offload crosses the veths unsplit; random loss therefore
//! first has every datagram into the host split out on its own
//! ([`Network::unbatch_inbound`]), so that it drops datagrams, not batches.
//!
//! Each fault is one nftables table of its own in the host's namespace,
//! created in one transaction (`nft -f -`) and deleted when its
//! [`InboundFilter`] is healed or dropped. Rules match only packets that
//! arrive on the host's `eth0`, so a client started inside the namespace
//! ([`crate::netns::HostCluster::cli_in`], over loopback) still reaches
//! the node losslessly: the test can always ask a faulty node how it is.
//! Nothing outside the test's own namespaces is touched.

use crate::netns::{self, Network};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why nftables faults cannot be made here, or `None` if they can: the
/// namespace requirements of [`netns::missing_requirements`], an `nft`
/// command (package `nftables`), and a kernel that accepts an `inet`
/// filter table inside a namespace.
pub fn missing_requirements() -> Option<String> {
    if let Some(reason) = netns::missing_requirements() {
        return Some(reason);
    }
    if Command::new("nft").arg("--version").output().is_err() {
        return Some(
            "needs nftables (nft) for packet filters in namespaces; no `nft` command".into(),
        );
    }
    let probe = format!("vault-nft-probe-{}-{}", std::process::id(), next_table());
    let added = Command::new("ip").args(["netns", "add", &probe]).output();
    if !added.is_ok_and(|output| output.status.success()) {
        return Some("needs network namespaces: `ip netns add` failed".into());
    }
    let outcome = nft_in(
        &probe,
        "table inet probe {\n  chain input {\n    type filter hook input priority 0; policy accept;\n  }\n}\n",
    )
    .map_err(|error| format!("nftables cannot filter inside a namespace: {error}"))
    .and_then(|()| probe_unbatching(&probe));
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    outcome.err()
}

/// Whether the kernel lets `ip link set ... gso_max_segs` change a veth
/// ([`Network::unbatch_inbound`], which random loss needs), tried on a
/// veth pair inside the probe namespace `namespace`.
fn probe_unbatching(namespace: &str) -> Result<(), String> {
    let run = |args: &[&str]| {
        let output = Command::new("ip")
            .args(["-n", namespace])
            .args(args)
            .output()
            .map_err(|error| format!("cannot run ip: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "needs `ip link set DEV gso_max_segs 1` for per-datagram loss: ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    run(&[
        "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
    ])?;
    run(&["link", "set", "dev", "probe0", "gso_max_segs", "1"])
}

fn next_table() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs `nft -f -` in `namespace` with `script` on standard input.
fn nft_in(namespace: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run nft in {namespace}: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|error| format!("cannot write the nft script: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("nft in {namespace}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f - in {namespace} failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// One fault on one host: an nftables table in its namespace whose
/// `input` chain drops some of what arrives on `eth0`. Healed by
/// [`InboundFilter::heal`] or by dropping it.
#[derive(Debug)]
pub struct InboundFilter {
    namespace: String,
    table: String,
    /// What the filter drops, for messages.
    what: String,
    removed: bool,
}

impl InboundFilter {
    /// Installs a table whose input chain holds `rule`; panics if nft
    /// refuses it (setup only).
    fn install(network: &Network, host: usize, rule: &str, what: String) -> Self {
        let namespace = network.namespace(host);
        let table = format!("vault_fault_{}", next_table());
        let script = format!(
            "table inet {table} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"eth0\" {rule} counter drop\n  }}\n}}\n"
        );
        if let Err(error) = nft_in(&namespace, &script) {
            panic!("cannot make host {host} {what}: {error}");
        }
        InboundFilter {
            namespace,
            table,
            what,
            removed: false,
        }
    }

    /// Makes host `host` deaf to `peers`: every packet it receives from
    /// their addresses is dropped, while it still sends to them and still
    /// hears every other address (clients in the root namespace, say).
    pub fn deafen(network: &Network, host: usize, peers: &[usize]) -> Self {
        assert!(!peers.is_empty(), "deaf to no one is no fault");
        let addresses: Vec<String> = peers.iter().map(|peer| network.ip(*peer)).collect();
        let rule = format!("ip saddr {{ {} }}", addresses.join(", "));
        InboundFilter::install(network, host, &rule, format!("deaf to hosts {peers:?}"))
    }

    /// Drops `percent` % of the datagrams host `host` receives, at random,
    /// whoever sent them; each datagram on its own
    /// ([`Network::unbatch_inbound`], which this calls), as on a real
    /// network.
    pub fn lose_inbound(network: &Network, host: usize, percent: u32) -> Self {
        assert!(
            (1..=100).contains(&percent),
            "loss is 1..=100 %, not {percent}"
        );
        network.unbatch_inbound(host);
        let rule = format!("numgen random mod 100 < {percent}");
        InboundFilter::install(
            network,
            host,
            &rule,
            format!("lose {percent} % of what it receives"),
        )
    }

    /// How many packets the filter has dropped so far (its rule's
    /// counter): a test can show that its fault was in force. Panics if
    /// nft cannot list the table.
    pub fn dropped(&self) -> u64 {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace,
                "nft",
                "list",
                "table",
                "inet",
            ])
            .arg(&self.table)
            .output()
            .unwrap_or_else(|error| panic!("cannot run nft list: {error}"));
        let listing = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "nft list table {} failed: {}",
            self.table,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        listing
            .split_whitespace()
            .skip_while(|word| *word != "packets")
            .nth(1)
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no packet counter in {listing}"))
    }

    /// Removes the fault; panics if nft cannot (the test would go on
    /// measuring a fault it believes gone).
    pub fn heal(mut self) {
        self.removed = true;
        if let Err(error) = nft_in(
            &self.namespace,
            &format!("delete table inet {}\n", self.table),
        ) {
            panic!("cannot heal the fault \"{}\": {error}", self.what);
        }
    }
}

impl Drop for InboundFilter {
    fn drop(&mut self) {
        // A namespace already gone took the table with it.
        if self.removed || !Path::new("/run/netns").join(&self.namespace).exists() {
            return;
        }
        if let Err(error) = nft_in(
            &self.namespace,
            &format!("delete table inet {}\n", self.table),
        ) {
            let _ = writeln!(std::io::stderr(), "cleanup: {error}");
        }
    }
}
