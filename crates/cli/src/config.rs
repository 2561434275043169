//! `pchat serve` settings: each from a flag, else a `PCHAT_*` environment
//! variable, else the TOML config file, else the default.

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PCHAT_LISTEN")]
    pub listen: Option<String>,
    /// Directory holding mgc and mgccomp [default: ./pchat-data].
    #[arg(long, env = "PCHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A TOML file with any of these settings (snake_case keys).
    #[arg(long, env = "PCHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// This chat server's name, recorded with everything it writes [default: chat1].
    #[arg(long, env = "PCHAT_SERVER_NAME")]
    pub server_name: Option<String>,
    /// The pool this server belongs to [default: pool1].
    #[arg(long, env = "PCHAT_POOL")]
    pub pool: Option<String>,
    /// The data center this server runs in [default: dc1].
    #[arg(long, env = "PCHAT_DATA_CENTER")]
    pub data_center: Option<String>,
    /// Messages returned on join when the client gives no limit, 1 to 500 [default: 30].
    #[arg(long, env = "PCHAT_DEFAULT_HISTORY")]
    pub default_history: Option<u32>,
    /// Most WebSocket connections held at once [default: 50000].
    #[arg(long, env = "PCHAT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds SIGTERM waits for connections to drain [default: 10].
    #[arg(long, env = "PCHAT_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
    /// Use a database server (`pchat db serve`) instead of the embedded
    /// databases: ADDR, or ADDR,FAILOVER_PARTNER. Needs the cluster secret.
    #[arg(long, env = "PCHAT_DATABASE")]
    pub database: Option<String>,
    /// A file holding the cluster secret (else PCHAT_CLUSTER_SECRET).
    #[arg(long, env = "PCHAT_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Serve as a chat server of this pool topology (topology.toml): the
    /// server name, pool, data center and listen address come from it, and
    /// the server follows the pool configuration (active servers, pool
    /// state) kept on its database servers.
    #[arg(long, env = "PCHAT_TOPOLOGY", conflicts_with = "database")]
    pub topology: Option<PathBuf>,
}

/// The cluster secret: from the file if given, else PCHAT_CLUSTER_SECRET;
/// at least 16 bytes.
pub fn cluster_secret(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let secret = match file {
        Some(f) => std::fs::read(f)
            .with_context(|| format!("cannot read the cluster secret file {}", f.display()))?
            .trim_ascii()
            .to_vec(),
        None => std::env::var("PCHAT_CLUSTER_SECRET")
            .context("set PCHAT_CLUSTER_SECRET or --cluster-secret-file")?
            .into_bytes(),
    };
    if secret.len() < pchat_wire::auth::MIN_SECRET_BYTES {
        anyhow::bail!(
            "the cluster secret must be at least {} bytes",
            pchat_wire::auth::MIN_SECRET_BYTES
        );
    }
    Ok(secret)
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    server_name: Option<String>,
    pool: Option<String>,
    data_center: Option<String>,
    default_history: Option<u32>,
    max_connections: Option<usize>,
    drain_timeout_secs: Option<u64>,
    database: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    topology: Option<PathBuf>,
}

/// The settings in force.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub server: pchat_server::Config,
    /// Database server addresses (the server, then its failover partner),
    /// with the cluster secret; None: the embedded databases.
    pub database: Option<(Vec<String>, Vec<u8>)>,
    /// The pool topology this server follows (its databases then come from
    /// the pool state).
    pub topology: Option<pchat_dr::Topology>,
    /// Where that topology was read from (the runbooks keep their journal
    /// next to it).
    pub topology_path: Option<PathBuf>,
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

pub fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    let defaults = pchat_server::Config::default();
    let default_history = args
        .default_history
        .or(file.default_history)
        .unwrap_or(defaults.default_history);
    if !(1..=pchat_api::MAX_PAGE).contains(&default_history) {
        anyhow::bail!(
            "default_history must be 1 to {} (got {default_history})",
            pchat_api::MAX_PAGE
        );
    }
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        anyhow::bail!("max_connections must be at least 1");
    }
    let pick = |a: Option<String>, f: Option<String>, d: String| -> anyhow::Result<String> {
        let v = a.or(f).unwrap_or(d);
        if !pchat_domain::valid_name(&v) {
            anyhow::bail!("'{v}' is not a valid name");
        }
        Ok(v)
    };
    let topology_path = args.topology.or(file.topology);
    let topology = match &topology_path {
        None => None,
        Some(path) => Some(crate::topology::load(path)?),
    };
    // In a topology, the server's name picks its entry there.
    let server_name = pick(args.server_name, file.server_name, defaults.server_name)?;
    let me = match &topology {
        None => None,
        Some(t) => Some(
            t.chat_servers
                .iter()
                .find(|c| c.name == server_name)
                .with_context(|| {
                    format!(
                        "{server_name} is not a chat server of pool {} (set --server-name)",
                        t.pool
                    )
                })?,
        ),
    };
    let listen = args
        .listen
        .or(file.listen)
        .or(me.map(|c| c.client.clone()))
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    listen
        .parse::<std::net::SocketAddr>()
        .with_context(|| format!("--listen '{listen}' is not an address like 127.0.0.1:8080"))?;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("pchat-data"));
    let database = match (args.database.or(file.database), &topology) {
        (None, Some(t)) => {
            let secret = cluster_secret(
                args.cluster_secret_file
                    .as_deref()
                    .or(file.cluster_secret_file.as_deref()),
            )?;
            // Where Normal points; the pool state decides once it is read.
            let addrs = t
                .serving_databases(pchat_dr::PoolState::Normal)
                .iter()
                .map(|d| d.address.clone())
                .collect();
            Some((addrs, secret))
        }
        (None, None) => None,
        (Some(list), _) => {
            let addrs: Vec<String> = list
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            if addrs.is_empty() || addrs.len() > 2 {
                anyhow::bail!("--database is ADDR or ADDR,FAILOVER_PARTNER");
            }
            let secret = cluster_secret(
                args.cluster_secret_file
                    .or(file.cluster_secret_file)
                    .as_deref(),
            )?;
            Some((addrs, secret))
        }
    };
    let (pool, data_center) = match (&topology, me) {
        (Some(t), Some(c)) => (t.pool.clone(), c.data_center.clone()),
        _ => (
            pick(args.pool, file.pool, defaults.pool)?,
            pick(args.data_center, file.data_center, defaults.data_center)?,
        ),
    };
    Ok(Settings {
        database,
        listen,
        data_dir,
        server: pchat_server::Config {
            server_name,
            pool,
            data_center,
            default_history,
            max_connections,
            drain_timeout: std::time::Duration::from_secs(
                args.drain_timeout_secs
                    .or(file.drain_timeout_secs)
                    .unwrap_or(defaults.drain_timeout.as_secs()),
            ),
            // Set by `serve`: next to mgc, wherever it is.
            files: None,
        },
        topology,
        topology_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pchat.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nserver_name = \"from-file\"\ndefault_history = 50\n",
        )
        .unwrap();
        let s = resolve(ServeArgs {
            config: Some(path.clone()),
            server_name: Some("from-flag".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.server.server_name, "from-flag");
        assert_eq!(s.server.default_history, 50);
        assert_eq!(s.data_dir, PathBuf::from("pchat-data"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let err = resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("not valid"), "{err:#}");
        assert!(resolve(ServeArgs {
            default_history: Some(501),
            ..Default::default()
        })
        .is_err());
        assert!(resolve(ServeArgs {
            listen: Some("nowhere".into()),
            ..Default::default()
        })
        .is_err());
    }
}
