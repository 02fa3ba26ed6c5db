//! `vault-cli certs ca|node|client`: the PKI by hand, for operators who
//! prepare hosts themselves instead of using `cluster init`.

use crate::args::CertsCommand;
use anyhow::{Context, Result};
use certs::{CertificateAuthority, Identity};
use std::path::Path;

/// Runs one `certs` subcommand.
pub fn run(command: &CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Ca { out } => {
            create_dir(out)?;
            CertificateAuthority::generate("vault cluster CA")?.write(out)?;
            println!("wrote {0}/ca.crt and {0}/ca.key", out.display());
        }
        CertsCommand::Node { ca, id, san, out } => {
            let authority = CertificateAuthority::load(ca)?;
            create_dir(out)?;
            let id: consensus::raft::NodeId = id.parse()?;
            authority
                .issue_node(&id.to_string(), san)?
                .write(out, "node")?;
            println!(
                "wrote {0}/node.crt and {0}/node.key for {id}",
                out.display()
            );
        }
        CertsCommand::Client {
            ca,
            name,
            admin,
            out,
        } => {
            let authority = CertificateAuthority::load(ca)?;
            let identity = if *admin {
                Identity::admin(name)?
            } else {
                Identity::client(name)?
            };
            create_dir(out)?;
            authority.issue_client(&identity)?.write(out, "client")?;
            println!(
                "wrote {0}/client.crt and {0}/client.key for {1}",
                out.display(),
                identity.uri()
            );
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}
