//! `pchat topology check`: reads `topology.toml` and lists every mistake.

use anyhow::{bail, Context};
use pchat_dr::Topology;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum TopologyCmd {
    /// Check a topology file and explain every mistake in it (exit status 1
    /// when there is one).
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// A topology that passes every check, or an error naming each mistake.
pub fn load(file: &std::path::Path) -> anyhow::Result<Topology> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let t = Topology::parse(&text)
        .map_err(|m| anyhow::anyhow!("{}: {}: {}", file.display(), m.code, m.message))?;
    let mistakes = t.check();
    if !mistakes.is_empty() {
        let list: Vec<String> = mistakes
            .iter()
            .map(|m| format!("{}: {}", m.code, m.message))
            .collect();
        bail!(
            "{} is not a usable topology (pchat topology check explains): {}",
            file.display(),
            list.join("; ")
        );
    }
    Ok(t)
}

pub fn run(cmd: TopologyCmd) -> anyhow::Result<()> {
    let TopologyCmd::Check { file, json } = cmd;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let (topology, mistakes) = match Topology::parse(&text) {
        Ok(t) => {
            let m = t.check();
            (Some(t), m)
        }
        Err(m) => (None, vec![m]),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": mistakes.is_empty(), "mistakes": mistakes })
        );
    } else if let (Some(t), true) = (&topology, mistakes.is_empty()) {
        println!(
            "{}: pool {}, {} chat servers ({} active), {} database servers, data centers {}",
            file.display(),
            t.pool,
            t.chat_servers.len(),
            t.chat_servers.iter().filter(|c| c.active).count(),
            t.database_servers.len(),
            t.data_centers.join(" and ")
        );
    } else {
        for m in &mistakes {
            eprintln!("{}: {}: {}", file.display(), m.code, m.message);
        }
    }
    if !mistakes.is_empty() {
        bail!("{} mistake(s) in {}", mistakes.len(), file.display());
    }
    Ok(())
}
