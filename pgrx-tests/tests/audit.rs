//! The durable audit trail (tenant.audit_events, tenant.audit_report): what a
//! transaction did is kept whether it commits, rolls back or is terminated;
//! calls PostgreSQL refuses are security events; registry changes and
//! administrator grants are recorded with who made them.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_audit";

#[test]
fn operations_are_audited_whether_the_caller_commits_rolls_back_or_is_terminated() {
    let mut su = fresh_database(&format!("{DB}_ops"));
    let db = format!("{DB}_ops");

    // Rolled back: the tenant is gone, its CREATE is not.
    let rolled = Uuid::new_v4();
    su.batch_execute("BEGIN").unwrap();
    assert!(create(&mut su, rolled, "au_rolled").ok());
    su.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.schema_operations"), 0);
    eventually(
        &mut su,
        &format!(
            "SELECT count(*) FROM tenant.audit_events WHERE institution_id = '{rolled}' AND event_class = 'OPERATION'
                AND action = 'CREATE' AND outcome = 'COMPLETED' AND NOT caller_committed AND session_role = 'postgres'"
        ),
        1,
    );

    // Committed, and failed: written by the committing transaction itself, at once.
    let failed = Uuid::new_v4();
    assert_eq!(create(&mut su, failed, "Not A Name").sqlstate.as_deref(), Some("42602"));
    assert_eq!(
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant.audit_events WHERE institution_id = '{failed}' AND outcome = 'FAILED'
                    AND error_sqlstate = '42602' AND caller_committed"
            )
        ),
        1
    );

    // Terminated in the middle of its transaction: still there.
    let terminated = Uuid::new_v4();
    let mut victim = superuser(&db);
    victim.batch_execute("BEGIN").unwrap();
    assert!(create(&mut victim, terminated, "au_terminated").ok());
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    su.query_one("SELECT pg_terminate_backend($1, 5000)", &[&pid]).unwrap();
    eventually(
        &mut su,
        &format!(
            "SELECT count(*) FROM tenant.audit_events WHERE institution_id = '{terminated}' AND action = 'CREATE'
                AND NOT caller_committed"
        ),
        1,
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.tenant_schemas"), 0);
}

#[test]
fn registry_changes_and_admin_grants_are_recorded_with_who_made_them() {
    let db = format!("{DB}_registry");
    let mut su = fresh_database(&db);
    su.batch_execute(
        "DROP ROLE IF EXISTS it_audit_inst_admin; CREATE ROLE it_audit_inst_admin LOGIN;
         DROP ROLE IF EXISTS it_audit_platform; CREATE ROLE it_audit_platform LOGIN;
         GRANT tenant_control_admin TO it_audit_platform;",
    )
    .unwrap();
    su.batch_execute("CREATE TABLE tenant_template.users (id int PRIMARY KEY, seen timestamptz NOT NULL)").unwrap();
    let institution = Uuid::new_v4();
    let schema_id: Uuid = create(&mut su, institution, "au_registry").row.get("schema_id");
    su.query_one("SELECT tenant.grant_institution_admin($1, 'it_audit_inst_admin')", &[&institution]).unwrap();

    let mut inst_admin = connect_as("it_audit_inst_admin", &db);
    inst_admin
        .execute("UPDATE tenant.tenant_schemas SET config = '{\"plan\": \"gold\"}' WHERE id = $1", &[&schema_id])
        .unwrap();
    // A change rolled back is kept as ROLLED_BACK (attempted, not in the registry).
    inst_admin.batch_execute("BEGIN").unwrap();
    inst_admin
        .execute("UPDATE tenant.tenant_schemas SET config = '{\"plan\": \"free\"}' WHERE id = $1", &[&schema_id])
        .unwrap();
    inst_admin.batch_execute("ROLLBACK").unwrap();

    let mut platform = connect_as("it_audit_platform", &db);
    assert!(outcome(platform.query_one("SELECT * FROM tenant.set_quota($1, '1 GB')", &[&schema_id]).unwrap()).ok());
    platform.query_one("SELECT tenant.set_limits($1, '{\"work_mem\": \"8MB\"}')", &[&schema_id]).unwrap();
    platform.query_one("SELECT tenant.set_row_limit($1, 'users', 10)", &[&schema_id]).unwrap();
    platform.query_one("SELECT tenant.set_retention('users', 'seen', '1 year', false)", &[]).unwrap();
    platform.query_one("SELECT * FROM tenant.suspend_institution($1)", &[&schema_id]).unwrap();
    su.query_one("SELECT tenant.revoke_institution_admin($1, 'it_audit_inst_admin')", &[&institution]).unwrap();

    let changes: Vec<(String, String, String, String)> = su
        .query(
            "SELECT action, outcome, session_role, detail::text FROM tenant.audit_events
              WHERE event_class = 'REGISTRY_CHANGE' AND institution_id = $1 ORDER BY occurred_at, id",
            &[&institution],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let partial: Vec<(&str, &str, &str)> =
        changes.iter().map(|(a, o, w, _)| (a.as_str(), o.as_str(), w.as_str())).collect();
    let committed_changes = [
        ("ADMIN_GRANT", "CHANGED", "postgres"),
        ("CONFIG", "CHANGED", "it_audit_inst_admin"),
        ("QUOTA", "CHANGED", "it_audit_platform"),
        ("LIMITS", "CHANGED", "it_audit_platform"),
        ("ROW_LIMIT", "CHANGED", "it_audit_platform"),
        ("STATUS", "CHANGED", "it_audit_platform"),
        ("ADMIN_REVOKE", "CHANGED", "postgres"),
    ];
    // The rolled-back change arrives through the worker, possibly after the others.
    eventually(
        &mut su,
        &format!(
            "SELECT count(*) FROM tenant.audit_events WHERE institution_id = '{institution}' AND action = 'CONFIG'
                AND outcome = 'ROLLED_BACK' AND NOT caller_committed AND detail->'new'->>'plan' = 'free'"
        ),
        1,
    );
    let committed: Vec<_> = partial.iter().filter(|(_, o, _)| *o == "CHANGED").cloned().collect();
    assert_eq!(committed, committed_changes);
    let config = changes.iter().find(|(a, o, _, _)| a == "CONFIG" && o == "CHANGED").unwrap();
    assert_eq!(config.3, r#"{"new": {"plan": "gold"}, "old": {}}"#);
    let status = changes.iter().find(|(a, _, _, _)| a == "STATUS").unwrap();
    assert_eq!(status.3, r#"{"new": "SUSPENDED", "old": "ACTIVE"}"#);
    let row_limit = changes.iter().find(|(a, _, _, _)| a == "ROW_LIMIT").unwrap();
    assert_eq!(row_limit.3, r#"{"new": 10, "old": null, "table_name": "users"}"#);
    // A retention rule belongs to no institution.
    let rule: String = su
        .query_one(
            "SELECT detail::text FROM tenant.audit_events WHERE action = 'RETENTION_RULE' AND institution_id IS NULL
                AND session_role = 'it_audit_platform' AND caller_committed",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        rule,
        r#"{"new": {"keep": "1 year", "archive": false, "date_column": "seen"}, "old": null, "table_name": "users"}"#
    );
    // The operations themselves are there too, as the platform admin's.
    assert_eq!(
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant.audit_events WHERE event_class = 'OPERATION' AND schema_id = '{schema_id}'
                    AND action IN ('QUOTA_SET', 'STATUS_CHANGE') AND session_role = 'it_audit_platform' AND caller_committed"
            )
        ),
        2
    );
}

#[test]
fn a_refused_call_is_a_security_event_and_no_caller_writes_the_trail() {
    let db = format!("{DB}_security");
    let mut su = fresh_database(&db);
    // The refusal happens before the extension's library is called: a
    // session that never used the extension needs it preloaded to see it.
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS it_audit_nobody; CREATE ROLE it_audit_nobody LOGIN;
         ALTER ROLE it_audit_nobody IN DATABASE {db} SET session_preload_libraries = 'tenant_control';"
    ))
    .unwrap();
    let mut nobody = connect_as("it_audit_nobody", &db);
    // A forged refusal (same text, same SQLSTATE, raised by SQL code) is not an event.
    assert_eq!(
        sqlstate_of_failure(
            &mut nobody,
            "DO $$ BEGIN RAISE EXCEPTION 'permission denied for function create_institution_schema' USING ERRCODE = '42501'; END $$"
        ),
        "42501"
    );
    // A refusal of some other schema's function is not the extension's business.
    su.batch_execute(
        "CREATE FUNCTION public.au_private() RETURNS int LANGUAGE sql AS 'SELECT 1';
         REVOKE ALL ON FUNCTION public.au_private() FROM PUBLIC;",
    )
    .unwrap();
    assert_eq!(sqlstate_of_failure(&mut nobody, "SELECT public.au_private()"), "42501");
    assert_eq!(
        sqlstate_of_failure(
            &mut nobody,
            &format!("SELECT * FROM tenant.create_institution_schema('{}')", Uuid::new_v4())
        ),
        "42501"
    );
    assert_eq!(sqlstate_of_failure(&mut nobody, "CALL tenant.apply_retention()"), "42501");
    // Caught by a savepoint in a read-only transaction that then commits: the
    // commit still succeeds, and the refusal is recorded (as committed).
    nobody.batch_execute("BEGIN READ ONLY; SAVEPOINT s").unwrap();
    assert_eq!(
        sqlstate_of_failure(
            &mut nobody,
            &format!("SELECT * FROM tenant.drop_institution_schema('{}')", Uuid::new_v4())
        ),
        "42501"
    );
    nobody.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT").unwrap();
    eventually(&mut su, "SELECT count(*) FROM tenant.audit_events WHERE event_class = 'SECURITY'", 3);
    let events: Vec<(String, String, String, String, bool)> = su
        .query(
            "SELECT action, outcome, session_role, error_sqlstate, caller_committed FROM tenant.audit_events
              WHERE event_class = 'SECURITY' ORDER BY action",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let nobody_refused = |action: &str| {
        (action.to_string(), "REFUSED".to_string(), "it_audit_nobody".to_string(), "42501".to_string(), false)
    };
    let mut dropped = nobody_refused("drop_institution_schema");
    dropped.4 = true;
    assert_eq!(events, vec![nobody_refused("apply_retention"), nobody_refused("create_institution_schema"), dropped]);
    let statement: String = su
        .query_one(
            "SELECT detail->>'statement' FROM tenant.audit_events WHERE action = 'create_institution_schema'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(statement.starts_with("SELECT * FROM tenant.create_institution_schema("), "{statement}");

    // No one but the extension writes the trail: not the platform admin, not an institution's.
    su.batch_execute("GRANT tenant_control_admin TO it_audit_nobody").unwrap();
    let mut admin = connect_as("it_audit_nobody", &db);
    for sql in [
        "INSERT INTO tenant.audit_events (occurred_at, event_class, action, outcome, session_role, caller_committed)
         VALUES (now(), 'SECURITY', 'x', 'REFUSED', 'x', true)",
        "UPDATE tenant.audit_events SET session_role = 'someone else'",
        "DELETE FROM tenant.audit_events",
        "TRUNCATE tenant.audit_events",
        "CREATE TABLE public.au_forge (x int); CREATE TRIGGER t AFTER INSERT ON public.au_forge FOR EACH ROW EXECUTE FUNCTION tenant.audit_registry_change('CONFIG')",
    ] {
        assert_eq!(sqlstate_of_failure(&mut admin, sql), "42501", "{sql}");
    }
    su.batch_execute("REVOKE tenant_control_admin FROM it_audit_nobody").unwrap();
}

#[test]
fn the_audit_report_groups_known_events() {
    let db = format!("{DB}_report");
    let mut su = fresh_database(&db);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // Known rows, written as the owner would (the superuser is the owner here).
    su.execute(
        "INSERT INTO tenant.audit_events (occurred_at, event_class, action, outcome, institution_id, session_role,
                                          caller_committed, error_sqlstate)
         VALUES ('2030-01-01 10:00+00', 'OPERATION', 'MIGRATE', 'COMPLETED', $1, 'ops', true, NULL),
                ('2030-01-02 10:00+00', 'OPERATION', 'MIGRATE', 'COMPLETED', $1, 'ops', false, NULL),
                ('2030-01-03 10:00+00', 'OPERATION', 'MIGRATE', 'FAILED', $1, 'ops', true, '55P03'),
                ('2030-01-03 11:00+00', 'OPERATION', 'BACKUP', 'FAILED', $1, 'mallory', true, '42501'),
                ('2030-01-04 10:00+00', 'REGISTRY_CHANGE', 'CONFIG', 'CHANGED', $1, 'alice', true, NULL),
                ('2030-02-01 10:00+00', 'OPERATION', 'MIGRATE', 'COMPLETED', $1, 'ops', true, NULL),
                ('2030-01-05 10:00+00', 'OPERATION', 'MIGRATE', 'COMPLETED', $2, 'ops', true, NULL),
                ('2030-01-06 10:00+00', 'SECURITY', 'create_institution_schema', 'REFUSED', NULL, 'mallory', false, '42501')",
        &[&a, &b],
    )
    .unwrap();
    let report = |client: &mut Client, institution: Option<Uuid>| -> Vec<String> {
        client
            .query(
                "SELECT concat_ws(' ', event_class, action, outcome, coalesce(error_sqlstate, '-'), session_role,
                                  security_event::text, events, not_committed, to_char(first_at AT TIME ZONE 'UTC', 'MM-DD HH24'),
                                  to_char(last_at AT TIME ZONE 'UTC', 'MM-DD HH24'))
                   FROM tenant.audit_report($1, '2030-01-01 00:00+00', '2030-02-01 00:00+00')",
                &[&institution],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(
        report(&mut su, Some(a)),
        vec![
            "OPERATION BACKUP FAILED 42501 mallory true 1 0 01-03 11 01-03 11",
            "OPERATION MIGRATE COMPLETED - ops false 2 1 01-01 10 01-02 10",
            "OPERATION MIGRATE FAILED 55P03 ops false 1 0 01-03 10 01-03 10",
            "REGISTRY_CHANGE CONFIG CHANGED - alice false 1 0 01-04 10 01-04 10",
        ]
    );
    // Every institution, and the events of none (a refused call names no institution).
    let all = report(&mut su, None);
    assert_eq!(all.len(), 5);
    assert_eq!(all[1], "OPERATION MIGRATE COMPLETED - ops false 3 1 01-01 10 01-05 10");
    assert_eq!(all[4], "SECURITY create_institution_schema REFUSED 42501 mallory true 1 1 01-06 10 01-06 10");
}

#[test]
fn a_burst_of_rollbacks_loses_no_event() {
    let db = format!("{DB}_burst");
    let mut su = fresh_database(&db);
    let schema_id = create_ok(&mut su, "au_burst");
    // Each rollback starts a worker; far more of them, far faster, than there
    // are worker slots (max_worker_processes): a rollback waits for a slot
    // instead of dropping its events.
    for n in 0..150 {
        su.batch_execute(&format!(
            "BEGIN; UPDATE tenant.tenant_schemas SET config = '{{\"n\": {n}}}' WHERE id = '{schema_id}'; ROLLBACK"
        ))
        .unwrap();
    }
    eventually(
        &mut su,
        "SELECT count(DISTINCT detail->'new'->>'n') FROM tenant.audit_events
          WHERE action = 'CONFIG' AND outcome = 'ROLLED_BACK' AND NOT caller_committed",
        150,
    );
}
