pub struct Config {
    pub url: String,
    pub admin_name: String,
    pub admin_password: String,
    pub senders: usize,
    pub rooms: usize,
    pub subscribers: usize,
    pub size: usize,
    pub duration: std::time::Duration,
    pub window: usize,
    pub hold_only: bool,
}
#[derive(serde::Serialize)]
pub struct Report {
    pub missing: u64,
    pub duplicated: u64,
}
impl Report {
    pub fn human(&self) -> String {
        String::new()
    }
}
pub async fn run(_c: Config) -> anyhow::Result<Report> {
    anyhow::bail!("todo")
}
