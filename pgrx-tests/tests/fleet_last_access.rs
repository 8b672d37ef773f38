//! Last access behind a transaction-pooling PgBouncer: many short
//! transactions of several clients record each institution's last access,
//! with at most one registry write per institution per server connection a
//! minute, and read-only transactions still enter their context.

mod common;
use common::*;
use postgres::{Client, NoTls};
use std::fs;
use std::process::Command;
use std::thread;

const DB: &str = "it_last_access";
const INSTITUTIONS: usize = 3;
const CLIENTS: usize = 6;
const ROUNDS: usize = 20;

/// A PgBouncer in transaction pooling mode with two server connections.
struct Bouncer {
    dir: std::path::PathBuf,
    port: String,
}

impl Bouncer {
    fn start() -> Bouncer {
        let port = std::env::var("TC_BOUNCER_PORT").unwrap_or_else(|_| "6439".into());
        let dir = std::path::PathBuf::from(host()).join("pgbouncer-last-access");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("users.txt"), "\"it_la_app\" \"\"\n").unwrap();
        fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n{DB} = host={host} port={pg} dbname={DB}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\n\
                 pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 100\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                host = host(),
                pg = common::port(),
                dir = dir.display()
            ),
        )
        .unwrap();
        Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().unwrap();
        let started = Command::new("runuser")
            .args(["-u", "postgres", "--", "pgbouncer", "-d"])
            .arg(dir.join("pgbouncer.ini"))
            .status()
            .unwrap();
        assert!(started.success(), "pgbouncer did not start");
        thread::sleep(std::time::Duration::from_millis(500));
        Bouncer { dir, port }
    }

    fn connect(&self) -> Client {
        Client::connect(&format!("host=127.0.0.1 port={} user=it_la_app dbname={DB}", self.port), NoTls).unwrap()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn last_access_is_recorded_rarely_behind_transaction_pooling() {
    let mut su = fresh_database(DB);
    su.batch_execute(
        "DROP ROLE IF EXISTS it_la_app; CREATE ROLE it_la_app LOGIN; GRANT tenant_control_app TO it_la_app;
         CREATE TABLE tenant_template.notes (id int);
         -- Test instrumentation: count the registry writes of last access.
         CREATE TABLE public.la_writes (schema_name text);
         CREATE FUNCTION public.la_count() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.la_writes VALUES (NEW.schema_name); RETURN NULL; END $$;
         CREATE TRIGGER la_count AFTER UPDATE OF last_accessed_at ON tenant.tenant_schemas
             FOR EACH ROW EXECUTE FUNCTION public.la_count();",
    )
    .unwrap();
    let institutions: Vec<uuid::Uuid> = (0..INSTITUTIONS)
        .map(|i| {
            let institution = uuid::Uuid::new_v4();
            assert!(create(&mut su, institution, &format!("la_{i}")).ok());
            institution
        })
        .collect();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas WHERE last_accessed_at IS NOT NULL"), 0);

    let bouncer = Bouncer::start();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = bouncer.connect();
            let institutions = institutions.clone();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    let institution = institutions[(c + round) % institutions.len()];
                    let begin = if round % 2 == 0 { "BEGIN" } else { "BEGIN READ ONLY" };
                    client.batch_execute(begin).unwrap();
                    client.batch_execute(&format!("SELECT tenant.set_context('{institution}')")).unwrap();
                    client.batch_execute("SELECT count(*) FROM notes").unwrap();
                    client.batch_execute("COMMIT").unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    drop(bouncer);

    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM tenant.list_institutions() WHERE last_accessed_at > now() - interval '5 minutes'"
        ),
        INSTITUTIONS as i64
    );
    // 120 transactions, but at most one write per institution per server connection.
    let writes = count(&mut su, "SELECT count(*) FROM public.la_writes");
    assert!(writes >= INSTITUTIONS as i64 && writes <= (2 * INSTITUTIONS) as i64, "{writes} registry writes");
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM tenant.idle_institutions WHERE schema_name LIKE 'la\\_%' AND idle_for < interval '5 minutes'"),
        INSTITUTIONS as i64
    );
}
