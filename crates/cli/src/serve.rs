//! `pchat serve`: opens the databases, starts the compliance recorder and the
//! chat server, and on SIGTERM drains and exits 0.

use crate::config::{self, ServeArgs};
use anyhow::Context;
use pchat_domain::{Command, Envelope};
use pchat_engine::{compliance, ChatEngine, MGCCOMP_FILE, MGC_FILE};
use pchat_store::{ChatStore, ComplianceStore};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = config::resolve(args)?;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            settings.data_dir.display()
        )
    })?;
    let _owner = crate::dirlock::lock(&settings.data_dir, "pchat serve")?;
    // Uploads live next to mgc (on the database server when it is remote),
    // so its backups, log shipping and mirroring carry them.
    let mut settings = settings;
    let mut remote_store = None;
    let (store, comp_store, local): (Arc<dyn ChatStore>, Arc<dyn ComplianceStore>, _) =
        match &settings.database {
            Some((addrs, secret)) => {
                // The database server runs the compliance recorder.
                let remote = pchat_wire::Remote(pchat_wire::RemoteStore::new(
                    addrs.clone(),
                    secret.clone(),
                    settings.server.server_name.clone(),
                ));
                remote_store = Some((remote.0.clone(), secret.clone()));
                settings.server.files = Some(Arc::new(remote.clone()));
                (Arc::new(remote.clone()), Arc::new(remote), None)
            }
            None => {
                let mgc = ChatEngine::open(&settings.data_dir.join(MGC_FILE))
                    .context("cannot open mgc")?;
                let comp = compliance::open(&settings.data_dir.join(MGCCOMP_FILE))
                    .context("cannot open mgccomp")?;
                settings.server.files = Some(Arc::new(pchat_store::blobs::LocalBlobs::new(
                    settings.data_dir.join(pchat_engine::FILES_DIR),
                )));
                (mgc.clone(), comp.clone(), Some((mgc, comp)))
            }
        };

    if settings.topology.is_none() {
        bootstrap_admin(&store, &settings.server.server_name, &settings.data_dir).await?;
    }

    let (stop_recorder, recorder_stop) = tokio::sync::watch::channel(false);
    let recorder = local.as_ref().map(|(mgc, comp)| {
        tokio::spawn(compliance::run_recorder(
            mgc.clone(),
            comp.clone(),
            recorder_stop,
        ))
    });

    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let topology = settings.topology.take();
    if topology.is_none() {
        let identity = store.identity().await?;
        tracing::info!(
            %addr,
            server = %settings.server.server_name,
            data_dir = %settings.data_dir.display(),
            family = %identity.family_id,
            last_lsn = identity.last_lsn,
            "pchat listening"
        );
    }
    // One line on stdout that scripts and tests can wait for.
    println!("pchat listening on http://{addr}");

    let server_name = settings.server.server_name.clone();
    let state =
        pchat_server::AppState::with_compliance(store.clone(), Some(comp_store), settings.server);
    if let (Some(topology), Some((remote, secret))) = (topology, remote_store) {
        // Serves nothing until it has read the pool configuration.
        let mut view = state.pool();
        view.serving = false;
        view.version = 0;
        view.state = "unknown".into();
        view.reason = Some(format!(
            "server inactive: {server_name} has not yet read the pool configuration"
        ));
        state.set_pool(view);
        if let Some(path) = settings.topology_path.clone() {
            let console = crate::console::PoolConsole::new(topology.clone(), path, secret.clone());
            let _ = state
                .console
                .set(Arc::new(crate::console::PoolConsoleHandle(console)));
        }
        tokio::spawn(crate::follow::follow(
            state.clone(),
            remote,
            topology,
            secret,
        ));
        let (store, data_dir) = (store.clone(), settings.data_dir.clone());
        tokio::spawn(async move {
            // Any active server may create the first administrator; retried
            // until one has (an inactive one is fenced meanwhile).
            loop {
                match bootstrap_admin(&store, &server_name, &data_dir).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "bootstrap administrator not created yet")
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    pchat_server::serve(listener, state, shutdown_signal()).await?;

    if let (Some((mgc, comp)), Some(recorder)) = (local, recorder) {
        // Everything acknowledged is already durable in mgc; let the recorder
        // copy the tail into mgccomp before closing (it resumes from its
        // cursor after a crash anyway).
        let target = store.identity().await?.last_lsn;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while compliance::recorded_through(&comp).await? < target
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_recorder.send(true);
        match recorder.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "compliance recorder stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "compliance recorder failed"),
            Ok(Ok(())) => {}
        }
        mgc.close();
        comp.close();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bootstrap_admin(
    store: &Arc<dyn ChatStore>,
    server_name: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    if store.user_count().await? > 0 {
        return Ok(());
    }
    match std::env::var("PCHAT_BOOTSTRAP_ADMIN") {
        Ok(v) => {
            let (name, password) = v
                .split_once(':')
                .context("PCHAT_BOOTSTRAP_ADMIN must be name:password")?;
            pchat_server::auth::check_password_policy(password)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let password_hash = pchat_server::auth::hash_password(password.to_string())
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let command = Command::BootstrapAdmin {
                name: name.to_string(),
                password_hash,
            };
            store
                .submit(Envelope {
                    origin: server_name.to_string(),
                    command,
                })
                .await
                .context("cannot create the bootstrap administrator")?;
            tracing::info!(
                name,
                "created the first administrator from PCHAT_BOOTSTRAP_ADMIN"
            );
        }
        Err(_) => {
            eprintln!(
                "No user exists yet. Create the first administrator with:\n  \
                 pchat admin create-user --data-dir {} --name admin --admin\n\
                 or start the server with PCHAT_BOOTSTRAP_ADMIN=name:password.",
                data_dir.display()
            );
        }
    }
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
