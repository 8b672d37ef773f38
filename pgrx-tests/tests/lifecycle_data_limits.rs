//! Per-institution limits over real connections (issue 16): the settings
//! tenant.set_context applies last for the transaction only, and the cap on
//! concurrent transactions in one institution's context is exact.

mod common;
use common::*;
use uuid::Uuid;

fn institution_of(su: &mut postgres::Client, schema_id: &Uuid) -> Uuid {
    su.query_one("SELECT institution_id FROM tenant.tenant_schemas WHERE id = $1", &[schema_id]).unwrap().get(0)
}

#[test]
fn limits_hold_for_the_transaction_and_cap_concurrent_transactions() {
    const DB: &str = "it_limits";
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.notes (id serial PRIMARY KEY, body text)").unwrap();
    for role in ["lm_capped_owner", "lm_free_owner"] {
        su.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
    }
    let capped = create_ok(&mut su, "lm_capped");
    let free = create_ok(&mut su, "lm_free");
    let (capped_institution, free_institution) = (institution_of(&mut su, &capped), institution_of(&mut su, &free));
    su.execute(
        "SELECT tenant.set_limits($1, '{\"statement_timeout\": \"300ms\", \"work_mem\": \"8MB\", \"max_transactions\": 2}')",
        &[&capped],
    )
    .unwrap();
    su.batch_execute("DROP ROLE IF EXISTS it_limits_app; CREATE ROLE it_limits_app LOGIN; GRANT tenant_control_app TO it_limits_app;")
        .unwrap();
    let mut apps: Vec<postgres::Client> = (0..4).map(|_| connect_as("it_limits_app", DB)).collect();

    // The statement timeout applies in the institution's context...
    let mut tx = apps[0].transaction().unwrap();
    tx.execute("SELECT tenant.set_context($1)", &[&capped_institution]).unwrap();
    let work_mem: String = tx.query_one("SELECT current_setting('work_mem')", &[]).unwrap().get(0);
    assert_eq!(work_mem, "8MB");
    let slow = tx.batch_execute("SELECT pg_sleep(2)").unwrap_err();
    assert_eq!(slow.code().map(|c| c.code()), Some("57014"), "{slow:?}");
    drop(tx);
    // ... and not after it, nor in another institution's.
    apps[0].batch_execute("SELECT pg_sleep(0.5)").unwrap();
    let mut tx = apps[0].transaction().unwrap();
    tx.execute("SELECT tenant.set_context($1)", &[&free_institution]).unwrap();
    tx.batch_execute("SELECT pg_sleep(0.5)").unwrap();
    tx.commit().unwrap();

    // Two transactions in the capped institution's context at once; a third is refused with 53300.
    let mut open: Vec<postgres::Transaction> = Vec::new();
    let (first, rest) = apps.split_at_mut(1);
    let (second, rest) = rest.split_at_mut(1);
    for client in [&mut first[0], &mut second[0]] {
        let mut tx = client.transaction().unwrap();
        tx.execute("SELECT tenant.set_context($1)", &[&capped_institution]).unwrap();
        // Entering again in the same transaction takes no second slot.
        tx.batch_execute("RESET ROLE").unwrap();
        tx.execute("SELECT tenant.set_context($1)", &[&capped_institution]).unwrap();
        open.push(tx);
    }
    let mut third = rest[0].transaction().unwrap();
    let refused = third.execute("SELECT tenant.set_context($1)", &[&capped_institution]).unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("53300"), "{refused:?}");
    drop(third);
    // Other institutions are not affected.
    let mut other = rest[1].transaction().unwrap();
    other.execute("SELECT tenant.set_context($1)", &[&free_institution]).unwrap();
    other.commit().unwrap();
    // Once one ends, a slot is free again.
    open.pop().unwrap().commit().unwrap();
    let mut third = rest[0].transaction().unwrap();
    third.execute("SELECT tenant.set_context($1)", &[&capped_institution]).unwrap();
    third.commit().unwrap();
    drop(open);
}

#[test]
fn a_row_limit_is_exact_under_concurrent_inserts() {
    const DB: &str = "it_row_limit";
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.users (id serial PRIMARY KEY, name text)").unwrap();
    su.batch_execute("DROP ROLE IF EXISTS rl_school_owner").unwrap();
    let school = create_ok(&mut su, "rl_school");
    let institution = institution_of(&mut su, &school);
    su.execute("SELECT tenant.set_row_limit($1, 'users', 100)", &[&school]).unwrap();
    su.batch_execute(
        "DROP ROLE IF EXISTS it_row_limit_app; CREATE ROLE it_row_limit_app LOGIN; GRANT tenant_control_app TO it_row_limit_app;",
    )
    .unwrap();

    // 8 writers insert 20 users each, one transaction per user, all at once:
    // exactly 100 inserts succeed, every other one fails with 53400.
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut app = connect_as("it_row_limit_app", DB);
                start.wait();
                let (mut ok, mut refused) = (0, 0);
                for n in 0..20 {
                    let mut tx = app.transaction().unwrap();
                    tx.execute("SELECT tenant.set_context($1)", &[&institution]).unwrap();
                    match tx.execute("INSERT INTO users (name) VALUES ($1)", &[&format!("w{writer} u{n}")]) {
                        Ok(_) => {
                            tx.commit().unwrap();
                            ok += 1;
                        }
                        Err(error) => {
                            assert_eq!(error.code().map(|c| c.code()), Some("53400"), "{error:?}");
                            refused += 1;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (ok, refused) = writers.into_iter().map(|w| w.join().unwrap()).fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    assert_eq!((ok, refused), (100, 60));
    assert_eq!(count(&mut su, "SELECT count(*) FROM rl_school.users"), 100);
    assert_eq!(count(&mut su, "SELECT row_count FROM tenant.row_limits"), 100);
}

/// Setting, changing and removing a row limit sends the caller no NOTICE
/// (no "trigger ... does not exist, skipping"), and each does what it says:
/// the counting triggers are there while a limit is, gone once it is removed.
#[test]
fn set_row_limit_sends_no_notice() {
    const DB: &str = "it_row_limit_quiet";
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.users (id serial PRIMARY KEY, name text)").unwrap();
    su.batch_execute("DROP ROLE IF EXISTS rlq_school_owner").unwrap();
    let school = create_ok(&mut su, "rlq_school");
    let (mut caller, notices) = listening(DB);
    let triggers = |su: &mut postgres::Client| {
        count(su, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'rlq_school.users'::regclass AND tgname LIKE 'tc_row_limit_%'")
    };
    for (max_rows, expected_triggers) in [(Some(10i64), 3), (Some(20), 3), (None, 0), (None, 0)] {
        caller.execute("SELECT tenant.set_row_limit($1, 'users', $2)", &[&school, &max_rows]).unwrap();
        assert_eq!(triggers(&mut su), expected_triggers, "after set_row_limit(.., {max_rows:?})");
    }
    assert_eq!(notices.lock().unwrap().clone(), Vec::<String>::new());
}
