//! The fleet storage recount as a procedure: one transaction per tenant; a
//! tenant with an operation under way is skipped instead of queueing the job
//! behind it, and DDL under way holds nothing up (sizes come from the files).

mod common;
use common::*;

const DB: &str = "it_storage";

#[test]
fn refresh_all_storage_counts_every_tenant_and_skips_a_locked_one() {
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.docs (id int PRIMARY KEY, body text)").unwrap();
    for name in ["st_a", "st_b", "st_busy"] {
        create_ok(&mut su, name);
        su.batch_execute(&format!(
            "INSERT INTO {name}.docs SELECT g, repeat(md5(g::text), 300) FROM generate_series(1, 200) g"
        ))
        .unwrap();
    }
    // An operation under way on one tenant holds its registry row.
    let mut operation = superuser(DB);
    operation
        .batch_execute("BEGIN; SELECT 1 FROM tenant.tenant_schemas WHERE schema_name = 'st_busy' FOR NO KEY UPDATE;")
        .unwrap();

    let (mut job, notices) = listening(DB);
    job.batch_execute("SET tenant_control.lock_timeout = 200").unwrap();
    job.batch_execute("CALL tenant.refresh_all_storage()").unwrap();
    operation.batch_execute("ROLLBACK").unwrap();

    assert!(
        notices.lock().unwrap().iter().any(|n| n.contains("2 tenant(s), 1 skipped")),
        "{:?}",
        notices.lock().unwrap()
    );
    let counted_and_actual = |su: &mut postgres::Client, name: &str| -> (i64, i64) {
        let row = su
            .query_one(
                &format!(
                    "SELECT (SELECT storage_used FROM tenant.tenant_schemas WHERE schema_name = '{name}'),
                            pg_total_relation_size('{name}.docs')::bigint"
                ),
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    for name in ["st_a", "st_b"] {
        let (counted, actual) = counted_and_actual(&mut su, name);
        assert_eq!(counted, actual, "{name}");
        assert!(counted > 0);
    }
    assert_eq!(count(&mut su, "SELECT storage_used FROM tenant.tenant_schemas WHERE schema_name = 'st_busy'"), 0);

    // DDL under way on a table (ACCESS EXCLUSIVE) holds nothing up: its
    // files are sized without opening it.
    let mut ddl = superuser(DB);
    ddl.batch_execute("BEGIN; LOCK TABLE st_busy.docs IN ACCESS EXCLUSIVE MODE;").unwrap();
    notices.lock().unwrap().clear();
    job.batch_execute("CALL tenant.refresh_all_storage()").unwrap();
    ddl.batch_execute("ROLLBACK").unwrap();
    assert!(
        notices.lock().unwrap().iter().any(|n| n.contains("3 tenant(s), 0 skipped")),
        "{:?}",
        notices.lock().unwrap()
    );
    let (counted, actual) = counted_and_actual(&mut su, "st_busy");
    assert_eq!(counted, actual);
}
