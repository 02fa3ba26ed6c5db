//! `vault-cli`: runs nodes, makes certificates, starts a local cluster, and is the client.

fn main() -> anyhow::Result<()> {
    Ok(())
}
