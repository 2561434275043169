//! End-to-end tests: the real `pchat` binary, real SQLite files in a
//! temporary directory, real TCP on 127.0.0.1 with ephemeral ports, real
//! processes killed with SIGKILL.

mod e2e {
    pub mod admin_cli;
    pub mod api;
    pub mod backup;
    pub mod bench;
    pub mod browser;
    pub mod common;
    pub mod compliance;
    pub mod crash;
    pub mod data;
    pub mod dbserver;
    pub mod files;
    pub mod fuzz;
    pub mod pool;
    pub mod replication;
    pub mod room_model;
    pub mod runbook;
    pub mod stream;
    pub mod topology;
}
