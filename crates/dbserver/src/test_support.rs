//! Helpers the crate's unit tests share.

use pchat_domain::{Actor, Command, Envelope};
use pchat_store::ChatStore;

/// Three users, `user{from}` onwards: three log records.
pub async fn users(db: &pchat_engine::ChatEngine, from: u32) {
    for i in from..from + 3 {
        let command = Command::CreateUser {
            actor: Actor::System,
            name: format!("user{i}"),
            display_name: None,
            password_hash: "x".into(),
            admin: false,
        };
        let envelope = Envelope {
            origin: "test".into(),
            command,
        };
        db.submit(envelope).await.unwrap();
    }
}
