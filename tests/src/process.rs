//! Running `vault-cli` as a child process under a hang guard.

use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for; only there to catch hangs.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The passphrase every test client uses.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Variables cargo sets for the crate under test, not for a nested build.
const RUNNER_VARIABLES: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
];

/// Path of the `vault-cli` binary of this workspace, built on first use if
/// the test runner did not build it already; or the binary that the
/// environment variable `VAULT_CLI` names (a prebuilt release binary for
/// measurements), which is then used as it is.
pub fn vault_cli() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(binary) = std::env::var_os("VAULT_CLI").filter(|path| !path.is_empty()) {
            let binary = PathBuf::from(binary);
            assert!(
                binary.is_file(),
                "VAULT_CLI={} is not a file",
                binary.display()
            );
            return binary;
        }
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable inside target/<profile>/deps");
        let binary = profile_dir.join("vault-cli");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "-p", "vault-cli", "--bin", "vault-cli"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // The binary is the tests' own profile's: under `cargo test
        // --release` a debug build would leave target/release/vault-cli as
        // old as the last release build.
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        // The test runner sets per-package variables (CARGO_MANIFEST_DIR,
        // CARGO_PKG_*, ...). Some build scripts (ring's) rerun when those
        // change, so inheriting them would make this build and the outer
        // `cargo test` rebuild half the dependency tree in turn.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if RUNNER_VARIABLES
                .iter()
                .any(|prefix| name.starts_with(prefix))
            {
                build.env_remove(name.as_ref());
            }
        }
        let status = build.status().expect("run cargo build for vault-cli");
        assert!(status.success(), "building vault-cli failed");
        assert!(binary.exists(), "no vault-cli at {}", binary.display());
        binary
    })
}

/// `count` consecutive loopback UDP ports that are free right now.
///
/// They are taken below the kernel's ephemeral range, so the client
/// endpoints that every `vault-cli` command binds to port 0 cannot take a
/// node's port between `cluster init` and `node run`; and no two clusters
/// of one test process are handed overlapping ranges.
pub fn free_port_range(count: u16) -> u16 {
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let (low, high) = port_window();
    let span = high - low;
    let mut next = NEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cursor = next.unwrap_or_else(|| {
        let seed = u64::from(std::process::id()) ^ now_nanos();
        (seed.wrapping_mul(6364136223846793005) % u64::from(span)) as u32
    });
    for _ in 0..500 {
        let base = low + cursor % span.saturating_sub(u32::from(count)).max(1);
        cursor = cursor.wrapping_add(u32::from(count) + 1);
        // base + count <= high <= 65535 by construction of the window.
        let base = base as u16;
        let sockets: Vec<_> = (0..count)
            .map_while(|offset| UdpSocket::bind(("127.0.0.1", base + offset)).ok())
            .collect();
        // `cluster init` puts each node's metrics listener (TCP) at its
        // port + 1000: those must be free too.
        let metrics_free = (0..count).all(|offset| {
            (base + offset)
                .checked_add(1000)
                .is_none_or(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if sockets.len() == count as usize && metrics_free {
            *next = Some(cursor);
            return base;
        }
    }
    panic!("no {count} consecutive free UDP ports on loopback");
}

/// Ports for test nodes: below the ephemeral range when there is room.
fn port_window() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low >= 12_000 {
        (10_000, ephemeral_low)
    } else {
        (61_000, 65_535)
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

/// The result of one `vault-cli` client command.
#[derive(Debug)]
pub struct CliResult {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliResult {
    pub(crate) fn from_output(output: Output) -> Self {
        CliResult {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Standard output parsed as the one JSON document `--json` promises.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    /// Panics with the whole result unless the command succeeded.
    pub fn expect_ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

/// Repeats `attempt` until it returns `Some`, or panics after [`HANG_GUARD`].
pub fn eventually<T>(what: &str, attempt: impl FnMut() -> Option<T>) -> T {
    eventually_explained(what, attempt, String::new)
}

/// Like [`eventually`]; on failure the panic message also carries
/// `explain()` (e.g. the nodes' log tails), computed only then.
pub fn eventually_explained<T>(
    what: &str,
    mut attempt: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        if let Some(value) = attempt() {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not reached within {HANG_GUARD:?}\n{}", explain());
}

/// Runs `vault-cli` with `args` only (no client config), e.g. `certs` or
/// `node run`, under the hang guard.
pub fn run_cli(args: &[&str]) -> CliResult {
    run_cli_with_env(args, &[])
}

/// Like [`run_cli`] with extra environment variables.
pub fn run_cli_with_env(args: &[&str], env: &[(&str, &str)]) -> CliResult {
    run_cli_full(args, env, None)
}

/// Runs `vault-cli` with `args`, extra environment and `input` on standard
/// input (closed right after), under the hang guard.
pub fn run_cli_full(args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> CliResult {
    run_cli_wrapped(&[], args, env, input)
}

/// Like [`run_cli_full`], with `vault-cli` started through `wrapper`, a
/// command that runs its arguments (e.g. `ip netns exec NS`): the client
/// then runs wherever the wrapper puts it.
pub fn run_cli_wrapped(
    wrapper: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&str>,
) -> CliResult {
    use std::io::Write;
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut command = Command::new(program);
            command.args(wrapper_args).arg(vault_cli());
            command
        }
        None => Command::new(vault_cli()),
    };
    command
        .args(args)
        .env_remove("VAULT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn vault-cli");
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(text) = input {
            // A command refused before it reads its input (a usage error)
            // closes the pipe: that is its answer, not a test failure.
            match stdin.write_all(text.as_bytes()) {
                Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                    panic!("write stdin: {error}")
                }
                _ => {}
            }
        }
    }
    CliResult::from_output(wait_with_guard(child))
}

/// Waits for `child`, collecting its output; kills it after [`HANG_GUARD`].
fn wait_with_guard(child: Child) -> Output {
    // Collect output on a thread so a chatty child can never fill its pipe
    // and block while we wait; kill it if it outlives the hang guard.
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(HANG_GUARD) {
        Ok(output) => output,
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            receiver
                .recv()
                .expect("output thread ends once the child dies")
        }
    };
    output.expect("collect vault-cli output")
}
