//! What every benchmark needs: the cluster `./tc bench` started, fresh
//! databases, PostgreSQL's own tools, and medians.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::env;
use std::process::Command;

/// The realistic template of pgrx-tests/benches/template.sql (52 relations).
pub const TEMPLATE: &str = include_str!("../template.sql");

pub fn host() -> String {
    env::var("TC_TEST_HOST").expect("run through ./tc bench")
}

pub fn port() -> String {
    env::var("TC_TEST_PORT").expect("run through ./tc bench")
}

pub fn connect(db: &str) -> Client {
    Client::connect(&format!("host={} port={} user=postgres dbname={db}", host(), port()), NoTls).unwrap()
}

/// An empty database of that name, made anew.
pub fn recreate(db: &str) -> Client {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    connect(db)
}

/// A new database with the extension, whose template is `TEMPLATE`.
pub fn with_template(db: &str) -> Client {
    let mut client = recreate(db);
    client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    client.batch_execute(&format!("SET search_path = tenant_template; {TEMPLATE}; RESET search_path")).unwrap();
    client
}

/// A PostgreSQL client tool (pg_dump, pgbench, ...) pointed at the cluster as postgres.
pub fn tool(name: &str) -> Command {
    let bin = env::var("TC_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let mut command = Command::new(format!("{bin}/{name}"));
    command.args(["-h", &host(), "-p", &port(), "-U", "postgres"]);
    command
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sorted[sorted.len() / 2]
}
