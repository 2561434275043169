//! Starting, killing and talking to a real `pchat serve`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const ADMIN: &str = "admin";
pub const ADMIN_PW: &str = "admin-password";

pub fn pchat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pchat"))
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a new temporary data directory, with the bootstrap admin.
    pub fn start() -> Server {
        Server::start_temp(&[("PCHAT_BOOTSTRAP_ADMIN", &format!("{ADMIN}:{ADMIN_PW}"))])
    }

    /// A server on a new temporary data directory, with `env`.
    pub fn start_temp(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(dir.path(), env);
        s._dir = Some(dir);
        s
    }

    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = pchat();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("PCHAT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pchat serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("pchat serve exited before listening")
                .unwrap();
            if let Some(u) = line.strip_prefix("pchat listening on ") {
                break u.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
        }
    }

    /// A server started elsewhere, printing its URL already read.
    pub fn attach(child: Child, url: String, data_dir: &Path) -> Server {
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    /// A new server process on the same data directory (keeps the temp dir alive).
    pub fn restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut s = Server::start_in(&self.data_dir, &[]);
        s._dir = self._dir.take();
        s
    }

    /// Like `restart`, with these environment variables.
    pub fn restart_with(mut self, env: &[(&str, &str)]) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut s = Server::start_in(&self.data_dir, env);
        s._dir = self._dir.take();
        s
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "{}/api/v1/stream?access_token={token}",
            self.url.replacen("http://", "ws://", 1)
        )
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.url.clone(),
            http: reqwest::Client::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running server with its administrator signed in, a category "general"
/// and the users "alice" and "bob" signed in.
pub struct Setup {
    pub server: Server,
    pub c: Client,
    pub admin: String,
    pub alice: String,
    pub bob: String,
    pub cat: i64,
}

pub async fn setup() -> Setup {
    let server = Server::start();
    let c = server.client();
    let admin = c.admin().await;
    let alice = c.user(&admin, "alice").await;
    let bob = c.user(&admin, "bob").await;
    let cat = c.category(&admin, "general").await;
    Setup {
        server,
        c,
        admin,
        alice,
        bob,
        cat,
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

/// An HTTP answer: status and JSON body (Null when empty).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Client {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Answer { status, body }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Answer {
        let b = if body.is_null() {
            None
        } else {
            Some(serde_json::to_vec(&body).unwrap())
        };
        self.send(method, path, token, b).await
    }

    /// The WebSocket stream's URL on this server, signed in with `token`.
    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "{}/api/v1/stream?access_token={token}",
            self.base.replacen("http://", "ws://", 1)
        )
    }

    pub async fn sign_in(&self, name: &str, password: &str) -> String {
        let a = self
            .call(
                "POST",
                "/api/v1/sessions",
                None,
                json!({"name": name, "password": password}),
            )
            .await;
        assert_eq!(a.status, 201, "sign in {name}: {}", a.body);
        a.body["token"].as_str().unwrap().to_string()
    }

    pub async fn admin(&self) -> String {
        self.sign_in(ADMIN, ADMIN_PW).await
    }

    /// Creates a user (as `admin_token`) and signs them in.
    pub async fn user(&self, admin_token: &str, name: &str) -> String {
        let pw = format!("{name}-password");
        let a = self
            .call(
                "POST",
                "/api/v1/users",
                Some(admin_token),
                json!({"name": name, "password": pw}),
            )
            .await;
        assert_eq!(a.status, 201, "create user {name}: {}", a.body);
        self.sign_in(name, &pw).await
    }

    pub async fn category(&self, admin_token: &str, name: &str) -> i64 {
        let a = self
            .call(
                "POST",
                "/api/v1/categories",
                Some(admin_token),
                json!({"name": name}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["id"].as_i64().unwrap()
    }

    pub async fn room(&self, token: &str, body: Value) -> i64 {
        let a = self.call("POST", "/api/v1/rooms", Some(token), body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["id"].as_i64().unwrap()
    }

    pub async fn post(&self, token: &str, room: i64, body: &str, cmid: &str) -> Answer {
        self.call(
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(token),
            json!({"body": body, "client_msg_id": cmid}),
        )
        .await
    }

    /// The whole history of a room, in order.
    pub async fn history(&self, token: &str, room: i64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let a = self
                .call(
                    "GET",
                    &format!("/api/v1/rooms/{room}/messages?after={after}&limit=500"),
                    Some(token),
                    Value::Null,
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            let page = a.body["messages"].as_array().unwrap().clone();
            let n = page.len();
            if let Some(last) = page.last() {
                after = last["seq"].as_i64().unwrap();
            }
            out.extend(page);
            if n < 500 {
                return out;
            }
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connect")
        .0
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next JSON frame, or None after `wait` of silence.
pub async fn ws_next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(t.as_str()).unwrap())
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Frames until one of type `kind` arrives (returned last).
pub async fn ws_until(ws: &mut Ws, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = ws_next(ws, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no '{kind}' frame; got {out:?}"));
        let done = f["type"] == kind;
        out.push(f);
        if done {
            return out;
        }
    }
}

/// The seqs of messages: history items, or stream frames of type "message".
pub fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f.get("type").is_none_or(|t| t == "message"))
        .map(|f| f["seq"].as_i64().unwrap())
        .collect()
}

/// A database server (`pchat db serve`) on 127.0.0.1.
pub const SECRET: &str = "a shared cluster secret";

pub struct DbServer {
    pub child: std::process::Child,
    pub addr: String,
    /// The `/metrics` address, when started with --metrics-listen.
    pub metrics: Option<String>,
}

impl DbServer {
    pub fn start(dir: &Path, listen: &str) -> DbServer {
        Self::start_with(dir, listen, &[])
    }
    pub fn start_with(dir: &Path, listen: &str, args: &[&str]) -> DbServer {
        Self::start_env(dir, listen, args, &[])
    }
    pub fn start_env(dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> DbServer {
        let mut child = pchat()
            .args(["db", "serve", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(args)
            .envs(env.iter().copied())
            .env("PCHAT_CLUSTER_SECRET", SECRET)
            .env("PCHAT_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut metrics = None;
        let addr = loop {
            let line = lines.next().expect("pchat db serve exited").unwrap();
            if let Some(a) = line.strip_prefix("pchat db metrics on ") {
                metrics = Some(a.trim().to_string());
            }
            if let Some(a) = line.strip_prefix("pchat db listening on ") {
                break a.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        DbServer {
            child,
            addr,
            metrics,
        }
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `pchat db ...` with the cluster secret; the JSON it printed, or its error.
pub fn db_cmd(args: &[&str]) -> Result<Value, String> {
    let out = pchat()
        .arg("db")
        .args(args)
        .arg("--json")
        .env("PCHAT_CLUSTER_SECRET", SECRET)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A database's entry in `pchat db status --server`.
pub fn db_status(server: &str, db: &str) -> Value {
    let v = db_cmd(&["status", "--server", server]).unwrap();
    v["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == db)
        .cloned()
        .unwrap()
}
